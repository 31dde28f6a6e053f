"""What one settlement step does to one bet, planned over plain values (no database, no ledger).

    plan_settle(bet, ...)    an open bet: settle it; a settled one: post the delta (new payout -
                             paid), keep a downgrade out (policy upgrade_only), or nothing
    plan_rollback(bet, ...)  a settled bet: the exact reverse of what was posted, bet open again
    plan_cash_out(bet, ...)  an open bet: its stake (or a share of it) out of play for the
                             quoted value; a whole cash-out is final
    plan_cash_out_reversal   an operator's reversal of a cash-out (palpable error): exact reverse
    plan_cancel(bet, ...)    a market's BetCancel: the bet refunded in full (a settled one by the
                             difference from what it was paid), final until the cancellation
                             is rolled back
    plan_uncancel(bet, ...)  RollbackBetCancel: the exact reverse of the refund, bet open again

Each returns a `Step` (or None: nothing to do): the settlement record to keep (one row of every
bet's history), the posting to make (legs on named accounts, a ledger key, the key it
corrects) and the bet's new state. commands/settlement.py turns the posting into a ledger
transfer and writes the rest through store/settlements.py.

Legs of one bet's postings (each zero-sum):
    settlement     bets_in_play -stake, player_cash +payout, house_revenue +(stake - payout)
    resettlement   player_cash +delta (a negative delta overflows into player_debt),
                   house_revenue -delta                          (delta = new payout - paid)
    rollback       the exact reverse of what was posted: bets_in_play +stake,
                   player_cash -paid (overflowing into player_debt), house_revenue -(stake - paid)

Funding (issue 15). What a bet returns goes to up to three places, its `Returns`:
    cash       player cash
    bonus      the share of the return staked from bonus funds (payout x stake_bonus / stake,
               rounded down; the cash share takes the rest) goes to the bet's *bonus target*:
               player_bonus while the bet's bonus is active, player_cash once it converted,
               house_promotions once it was forfeited (the forfeited bonus keeps its returns)
    free_bet   a free bet pays winnings only (return - stake, never below 0) in cash; a void
               (every leg void) returns the free bet itself to player_free_bet, not cash
A free bet's stake is in free_bets_in_play and its house side is house_promotions (the cost of
the promotion); a cash bet's are bets_in_play and house_revenue. Every posting is then
    in-play account  -stake (settlement, cash-out, refund) / +stake (reversals) / 0 (deltas)
    player cash, bonus target, player_free_bet   the change of the bet's Returns
    house side       the rest
and a player account debited beyond its balance (a clawback) overflows into player_debt.
`paid` is cash + bonus returned (a free bet: its cash winnings); `paid_bonus` the bonus share of
it; `returned_free_bet` the free bet given back.

Versions and keys: a bet is settled against the current results of all its markets; its
settlement version is the sum of those markets' result versions (a single: the market's
version). Its ledger keys name that version and the bet's rollback generation (how many times
its settlement was rolled back): `bet:<id>:v<version>`, after a rollback `bet:<id>:g<n>:v<version>`
(rollbacks `bet:<id>:rollback:v<version>`, `bet:<id>:g<n>:rollback:v<version>`), so a key is
never reused for a different posting, whatever order late runs arrive in.

Bounds: a payout above PAYOUT_MINOR_MAX (a bet taken before payouts were bounded at intake)
cannot be posted; its step is `review` (the bet is flagged, the rest of its batch settles).
Must never: touch a database, the ledger, the clock or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache
from typing import Any

from domain.frozen import quick_init
from domain.settlement.each_way import PlaceTerms
from domain.settlement.payout import (
    Bet,
    BetType,
    Leg,
    LegOutcome,
    Pending,
    Settled,
    UnitReturn,
    check_stake,
    settle,
    unit_return,
)
from domain.settlement.results import SelectionResult

# (market id, selection id, price numerator, price denominator), in leg order
StoredLeg = tuple[str, str, int, int]
Results = Mapping[tuple[str, str], SelectionResult]

# The most one bet may return and still be posted: far above any payout taken at intake
# (Settings.bet_payout_max_minor), far below what a ledger amount (bigint) holds.
PAYOUT_MINOR_MAX = 10**15


class BetStatus(StrEnum):
    OPEN = "open"              # the stake is in bets-in-play
    SETTLED = "settled"        # `paid` has gone to the player (and the rest to the house)
    REJECTED = "rejected"      # refused at intake: no money, never settled
    CASHED_OUT = "cashed_out"  # the whole stake was cashed out: final, results leave it alone
    CANCELLED = "cancelled"    # refunded by a market's BetCancel: final unless that is rolled back


# A bet in one of these states is never settled, resettled or rolled back by a result.
FINAL = frozenset({BetStatus.REJECTED, BetStatus.CASHED_OUT, BetStatus.CANCELLED})


class Funding(StrEnum):
    """What the stake is: cash (player cash, and bonus funds per the stake order) or a free
    bet (stake not returned)."""
    CASH = "cash"
    FREE_BET = "free_bet"


class Account(StrEnum):
    """The accounts a settlement posting touches (the player's, in the bet's currency)."""
    BETS_IN_PLAY = "bets_in_play"
    PLAYER_CASH = "player_cash"
    HOUSE_REVENUE = "house_revenue"
    FREE_BETS_IN_PLAY = "free_bets_in_play"
    PLAYER_FREE_BET = "player_free_bet"
    PLAYER_BONUS = "player_bonus"
    HOUSE_PROMOTIONS = "house_promotions"


# Player accounts that never go negative: a debit beyond their balance overflows into debt.
CLAWBACK_TO_DEBT = frozenset({Account.PLAYER_CASH, Account.PLAYER_BONUS,
                              Account.PLAYER_FREE_BET})


class PostingKind(StrEnum):
    SETTLEMENT = "settlement"
    RESETTLEMENT = "resettlement"
    ROLLBACK = "settlement_rollback"
    CASH_OUT = "cash_out"
    CASH_OUT_REVERSAL = "cash_out_reversal"
    CANCEL = "bet_cancel"
    CANCEL_ROLLBACK = "bet_cancel_rollback"


class RecordKind(StrEnum):
    """The kind of a row of a bet's settlement history (bet_settlements.kind)."""
    SETTLEMENT = "settlement"
    RESETTLEMENT = "resettlement"
    ROLLBACK = "rollback"
    CASH_OUT = "cash_out"
    CASH_OUT_REVERSAL = "cash_out_reversal"
    CANCELLATION = "cancellation"
    CANCELLATION_ROLLBACK = "cancellation_rollback"


@quick_init
@dataclass(frozen=True)
class StoredBet:
    """A bet as settlement reads it (the bets row and its legs)."""
    id: str
    player_id: str
    partner_id: str
    currency: str
    stake: int
    bet_type: str
    place_fraction: str | None
    place_count: int | None
    status: BetStatus
    paid: int                       # net returned to the player so far
    payout: int | None              # the return under the results last applied
    version: int | None             # settlement version of `paid`
    settlement_key: str | None      # the ledger key a correction links to
    legs: tuple[StoredLeg, ...]
    rollbacks: int = 0              # rollback generation (part of later ledger keys)
    funding: Funding = Funding.CASH
    stake_bonus: int = 0            # the part of `stake` staked from bonus funds
    paid_bonus: int = 0             # the bonus share of `paid`
    returned_free_bet: int = 0      # the free bet given back (a void free bet)
    bonus_target: Account = Account.PLAYER_BONUS   # where the bonus share goes now
    bonus_id: str | None = None     # the bonus active when the bet was placed
    bonus_wagered: bool = False     # already counted towards that bonus's wagering
    cancellation_id: int | None = None   # the market cancellation that refunded it

    @property
    def returned(self) -> Returns:
        """What the bet's settlement has given back so far, by destination."""
        return Returns(self.paid - self.paid_bonus, self.paid_bonus, self.returned_free_bet)


@quick_init
@dataclass(frozen=True)
class Returns:
    """What a bet gives back, by destination (minor units; a difference may be negative)."""
    cash: int = 0
    bonus: int = 0                  # to the bet's bonus target
    free_bet: int = 0               # the free bet itself, back to player_free_bet

    @property
    def paid(self) -> int:
        """The part `paid` counts: cash and bonus."""
        return self.cash + self.bonus

    @property
    def total(self) -> int:
        return self.cash + self.bonus + self.free_bet

    def __sub__(self, other: Returns) -> Returns:
        return Returns(self.cash - other.cash, self.bonus - other.bonus,
                       self.free_bet - other.free_bet)

    def __neg__(self) -> Returns:
        return Returns(-self.cash, -self.bonus, -self.free_bet)

    def __bool__(self) -> bool:
        return bool(self.cash or self.bonus or self.free_bet)


@quick_init
@dataclass(frozen=True)
class PlannedLeg:
    account: Account
    amount: int                     # signed minor units
    shortfall_to_debt: bool = False  # what player cash cannot cover becomes player debt


@quick_init
@dataclass(frozen=True)
class PlannedPosting:
    key: str
    kind: PostingKind
    bet_id: str
    legs: tuple[PlannedLeg, ...]
    corrects: str | None            # the key of the posting this one corrects
    market_id: str                  # the market whose run made it
    version: int                    # that run's result version


@quick_init
@dataclass(frozen=True)
class SettlementRecord:
    """One row of a bet's settlement history."""
    bet_id: str
    player_id: str
    kind: RecordKind
    version: int
    payout: int                     # the return these results give (rollback: 0)
    delta: int                      # moved to (+) or from (-) the player
    applied: bool                   # False: upgrade_only kept a downgrade out
    outcome: str                    # won, lost, void, partial, rolled_back
    ledger_key: str | None
    results: dict[str, Any]         # the leg results used ("market/selection" -> JSON)


@quick_init
@dataclass(frozen=True)
class BetUpdate:
    bet_id: str
    status: BetStatus
    paid: int
    payout: int | None
    version: int | None
    settlement_key: str | None
    rollbacks: int = 0
    needs_review: str | None = None   # why settlement could not post the bet
    paid_bonus: int = 0
    returned_free_bet: int = 0
    cancellation_id: int | None = None


@quick_init
@dataclass(frozen=True)
class Step:
    """What one bet needs: a history row to keep, maybe a posting, maybe a bet update."""
    record: SettlementRecord | None = None
    posting: PlannedPosting | None = None
    update: BetUpdate | None = None
    pending: bool = False           # a parlay waiting for another market's result
    skipped: bool = False           # upgrade_only kept a downgrade out
    review: str | None = None       # cannot be posted: why (the bet is flagged, not settled)


# --- the pure bet and the results it used -------------------------------------------------

def domain_bet(bet_type: str, stake: int, legs: tuple[StoredLeg, ...] | list[StoredLeg],
               place_fraction: str | None, place_count: int | None) -> Bet:
    """The pure bet from its stored rows."""
    terms = PlaceTerms(Fraction(place_fraction), place_count or 0) if place_fraction else None
    return Bet(BetType(bet_type), stake,
               tuple(Leg(m, s, Fraction(num, den)) for m, s, num, den in legs),
               place_terms=terms)


def results_used(bet: StoredBet, results: Results) -> dict[str, Any]:
    """The results of the bet's legs that are known, as kept with each settlement record."""
    return {f"{m}/{s}": results[(m, s)].to_json() for m, s, _, _ in bet.legs
            if (m, s) in results}


class Settler:
    """`settle` for the many bets of one batch against the same results. Each distinct bet
    shape (type, legs with their prices, place terms) is worked out once, per unit staked, and
    every bet of that shape scales it: a return is exactly the stake times its shape's
    per-unit return, rounded down once, so the answer is `settle`'s to the minor unit. The
    results a shape used (`used`) are kept once per shape too. Memory: one entry per shape."""

    def __init__(self, results: Results) -> None:
        self.results = results
        self._units: dict[tuple[Any, ...], UnitReturn | Pending] = {}
        self._used: dict[tuple[StoredLeg, ...], dict[str, Any]] = {}
        # (shape, stake) -> its settlement: a page's bets share a few stakes, and a Settled is
        # an immutable value (the stake was checked when it was first worked out)
        self._settled: dict[tuple[Any, ...], Settled | Pending] = {}

    def settle(self, bet: StoredBet) -> Settled | Pending:
        key = (bet.bet_type, bet.legs, bet.place_fraction, bet.place_count, bet.stake)
        settled = self._settled.get(key)
        if settled is None:
            shape = key[:4]
            unit = self._units.get(shape)
            if unit is None:
                # The first bet of a shape is checked whole (legs, terms, stake) as `settle`
                # does.
                unit = self._units[shape] = unit_return(
                    domain_bet(bet.bet_type, bet.stake, bet.legs, bet.place_fraction,
                               bet.place_count), self.results)
            else:
                check_stake(bet.bet_type, bet.stake)
            settled = self._settled[key] = (unit if isinstance(unit, Pending)
                                            else unit.at(bet.stake))
        return settled

    def used(self, bet: StoredBet) -> dict[str, Any]:
        """`results_used(bet, results)`, shared by the bets of one set of legs (read only)."""
        used = self._used.get(bet.legs)
        if used is None:
            used = self._used[bet.legs] = results_used(bet, self.results)
        return used


def settlement_version(bet: StoredBet, versions: Mapping[str, int]) -> int:
    """The sum of the current result versions of the bet's markets (each counted once)."""
    legs = bet.legs
    if len(legs) == 1:     # a single or an each-way bet (most of a page)
        return versions[legs[0][0]]
    return sum(versions[m] for m in {leg[0] for leg in legs})


def _generation(rollbacks: int) -> str:
    return f":g{rollbacks}" if rollbacks else ""


def settlement_key(bet_id: str, version: int, rollbacks: int = 0) -> str:
    """The ledger key of the bet's settlement (or resettlement) at `version`, in its rollback
    generation `rollbacks`."""
    return f"bet:{bet_id}{_generation(rollbacks)}:v{version}"


def rollback_key(bet_id: str, version: int, rollbacks: int = 0) -> str:
    """The ledger key of the reversal of the bet's settlement at `version`, made in rollback
    generation `rollbacks` (the generation before the rollback)."""
    return f"bet:{bet_id}{_generation(rollbacks)}:rollback:v{version}"


def cash_out_key(bet_id: str, seq: int) -> str:
    """The ledger key of the bet's `seq`-th cash-out (1: `bet:<id>:cashout`; a later partial
    cash-out of the same bet: `bet:<id>:cashout:<seq>`)."""
    return f"bet:{bet_id}:cashout" if seq == 1 else f"bet:{bet_id}:cashout:{seq}"


def cash_out_reversal_key(bet_id: str, seq: int) -> str:
    return f"{cash_out_key(bet_id, seq)}:reversal"


def cancel_key(bet_id: str, cancellation_id: int) -> str:
    """The ledger key of the bet's refund by market cancellation `cancellation_id`."""
    return f"bet:{bet_id}:cancel:{cancellation_id}"


def uncancel_key(bet_id: str, cancellation_id: int) -> str:
    return f"{cancel_key(bet_id, cancellation_id)}:rollback"


# --- what a bet returns -----------------------------------------------------------------

def bet_price(bet: StoredBet) -> Fraction:
    """The bet's price as wagering requirements read it: a parlay's is the product of its legs'
    prices, a single's or an each-way bet's its one leg's."""
    price = Fraction(1)
    for _, _, num, den in bet.legs:
        price *= Fraction(num, den)
    return price


def bonus_share(amount: int, part: int, whole: int) -> int:
    """The bonus share of `amount` when `part` of `whole` was staked from bonus funds (rounded
    down: the cash share takes the odd minor unit)."""
    return amount * part // whole if whole and part else 0


def returns_for(bet: StoredBet, settled: Settled) -> Returns:
    """What the settled bet returns, by destination (see the module docstring)."""
    if bet.funding == Funding.FREE_BET:
        if all(leg is LegOutcome.VOID for leg in settled.legs):
            return Returns(free_bet=bet.stake)
        return Returns(cash=max(0, settled.payout - bet.stake))
    bonus = bonus_share(settled.payout, bet.stake_bonus, bet.stake)
    return Returns(settled.payout - bonus, bonus)     # (cash, bonus): see plan_settle


def refund_for(bet: StoredBet) -> Returns:
    """A bet refunded in full (cancelled): its stake back where it came from."""
    if bet.funding == Funding.FREE_BET:
        return Returns(free_bet=bet.stake)
    return Returns(cash=bet.stake - bet.stake_bonus, bonus=bet.stake_bonus)


# --- legs -----------------------------------------------------------------------------------

def _in_play(funding: Funding) -> Account:
    return Account.FREE_BETS_IN_PLAY if funding == Funding.FREE_BET else Account.BETS_IN_PLAY


def _house(funding: Funding) -> Account:
    return Account.HOUSE_PROMOTIONS if funding == Funding.FREE_BET else Account.HOUSE_REVENUE


# A pure function of immutable values that a batch asks about with the same few stakes and
# payouts over and over: each answer is worked out once (bounded: least recently used first).
@lru_cache(maxsize=8_192)
def movement_legs(funding: Funding, in_play: int, returns: Returns,
                  bonus_target: Account = Account.PLAYER_BONUS) -> tuple[PlannedLeg, ...]:
    """The legs of one posting of a bet: `in_play` on its in-play account, `returns` to the
    player (cash, bonus target, free bet), the rest on its house side. Legs on one account are
    merged, zero legs dropped; a player debit overflows into debt."""
    amounts: dict[Account, int] = {}
    for account, amount in ((_in_play(funding), in_play), (Account.PLAYER_CASH, returns.cash),
                            (bonus_target, returns.bonus),
                            (Account.PLAYER_FREE_BET, returns.free_bet),
                            (_house(funding), -(in_play + returns.total))):
        amounts[account] = amounts.get(account, 0) + amount
    return tuple(PlannedLeg(account, amount,
                            shortfall_to_debt=amount < 0 and account in CLAWBACK_TO_DEBT)
                 for account, amount in amounts.items() if amount)


def settlement_legs(stake: int, payout: int) -> tuple[PlannedLeg, ...]:
    """A cash bet's settlement: its stake out of play, the payout to cash, the rest house."""
    return movement_legs(Funding.CASH, -stake, Returns(cash=payout))


def delta_legs(delta: int) -> tuple[PlannedLeg, ...]:
    return movement_legs(Funding.CASH, 0, Returns(cash=delta))


def reversal_legs(stake: int, paid: int) -> tuple[PlannedLeg, ...]:
    return movement_legs(Funding.CASH, stake, Returns(cash=-paid))


def _legs(bet: StoredBet, in_play: int, returns: Returns) -> tuple[PlannedLeg, ...]:
    return movement_legs(bet.funding, in_play, returns, bet.bonus_target)


# --- steps ----------------------------------------------------------------------------------

def _record(bet: StoredBet, kind: RecordKind, version: int, payout: int, delta: int,
            applied: bool, outcome: str, key: str | None,
            used: dict[str, Any]) -> SettlementRecord:
    return SettlementRecord(bet.id, bet.player_id, kind, version, payout, delta, applied,
                            outcome, key, used)


def _kept(bet: StoredBet, **changes: Any) -> BetUpdate:
    """The bet's update keeping its settlement as it is, but for `changes`."""
    fields = {"bet_id": bet.id, "status": bet.status, "paid": bet.paid, "payout": bet.payout,
              "version": bet.version, "settlement_key": bet.settlement_key,
              "rollbacks": bet.rollbacks, "paid_bonus": bet.paid_bonus,
              "returned_free_bet": bet.returned_free_bet,
              "cancellation_id": bet.cancellation_id}
    return BetUpdate(**{**fields, **changes})


def _returned(returns: Returns) -> dict[str, int]:
    """The BetUpdate fields of what a bet has returned."""
    return {"paid": returns.paid, "paid_bonus": returns.bonus,
            "returned_free_bet": returns.free_bet}


def applied(bet: StoredBet, update: BetUpdate) -> StoredBet:
    """The bet as it is once `update` is written (to plan a second step in one transaction)."""
    return replace(bet, status=update.status, paid=update.paid, payout=update.payout,
                   version=update.version, settlement_key=update.settlement_key,
                   rollbacks=update.rollbacks, paid_bonus=update.paid_bonus,
                   returned_free_bet=update.returned_free_bet,
                   cancellation_id=update.cancellation_id)


def plan_review(bet: StoredBet, reason: str) -> Step:
    """The bet cannot be posted: flag it with the reason, leave its money where it is."""
    return Step(update=_kept(bet, needs_review=reason), review=reason)


def plan_rollback(bet: StoredBet, market_id: str, version: int,
                  used: dict[str, Any]) -> Step | None:
    """Reverse everything the bet's settlement posted and open it again, one rollback
    generation later (None: not settled; a cashed-out or cancelled bet is left alone)."""
    if bet.status != BetStatus.SETTLED or bet.version is None:
        return None
    key = rollback_key(bet.id, bet.version, bet.rollbacks)
    return Step(
        record=_record(bet, RecordKind.ROLLBACK, bet.version, 0, -bet.paid, True,
                       "rolled_back", key, used),
        posting=PlannedPosting(key, PostingKind.ROLLBACK, bet.id,
                               _legs(bet, bet.stake, -bet.returned), bet.settlement_key,
                               market_id, version),
        update=BetUpdate(bet.id, BetStatus.OPEN, 0, None, None, None,
                         rollbacks=bet.rollbacks + 1))


def plan_settle(bet: StoredBet, market_id: str, results: Results, versions: Mapping[str, int],
                used: dict[str, Any], *, upgrade_only: bool,
                settler: Settler | None = None) -> Step | None:
    """Settle an open bet, or post the delta of a settled one (None: nothing to do; a
    cashed-out or cancelled bet is final and never touched). `settler`: a batch's Settler over
    the same `results` (the same answer, each bet shape worked out once)."""
    if bet.status in FINAL:
        return None
    settled = (settler.settle(bet) if settler is not None
               else settle(domain_bet(bet.bet_type, bet.stake, bet.legs, bet.place_fraction,
                                      bet.place_count), results))
    if isinstance(settled, Pending):
        return Step(pending=True)
    version = settlement_version(bet, versions)
    if settled.payout > PAYOUT_MINOR_MAX:
        return plan_review(bet, f"payout {settled.payout} is above the most one bet can return "
                                f"({PAYOUT_MINOR_MAX} minor units)")
    returns = returns_for(bet, settled)
    outcome, payout = str(settled.outcome), returns.paid
    key = settlement_key(bet.id, version, bet.rollbacks)

    if bet.status == BetStatus.OPEN:
        # Every bet of a first settlement comes here: its values are made with positional
        # arguments (a class called with keywords gets them as a dict, built and unpacked).
        return Step(
            _record(bet, RecordKind.SETTLEMENT, version, payout, payout, True, outcome, key,
                    used),
            PlannedPosting(key, PostingKind.SETTLEMENT, bet.id, _legs(bet, -bet.stake, returns),
                           None, market_id, version),
            # _kept(bet, status=SETTLED, payout=..., version=..., settlement_key=...,
            # **_returned(returns)), written out: bet_id, status, paid, payout, version,
            # settlement_key, rollbacks, needs_review, paid_bonus, returned_free_bet,
            # cancellation_id
            BetUpdate(bet.id, BetStatus.SETTLED, returns.paid, payout, version, key,
                      bet.rollbacks, None, returns.bonus, returns.free_bet,
                      bet.cancellation_id))
    if bet.version is not None and version <= bet.version:
        return None   # already settled against these results (a re-run): nothing to do
    change = returns - bet.returned
    delta = payout - bet.paid
    if not change:
        if bet.payout != payout:   # back to what was paid after a kept-out downgrade
            return Step(update=_kept(bet, payout=payout))
        return None   # unchanged: no posting, no new version
    if change.total < 0 and upgrade_only:
        return Step(
            record=_record(bet, RecordKind.RESETTLEMENT, version, payout, 0, False, outcome,
                           None, used),
            update=_kept(bet, payout=payout, version=version),
            skipped=True)
    return Step(
        record=_record(bet, RecordKind.RESETTLEMENT, version, payout, delta, True, outcome,
                       key, used),
        posting=PlannedPosting(key, PostingKind.RESETTLEMENT, bet.id, _legs(bet, 0, change),
                               bet.settlement_key, market_id, version),
        update=_kept(bet, payout=payout, version=version, **_returned(returns)))


# --- cash-out ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CashOutPlan:
    posting: PlannedPosting
    record: SettlementRecord
    stake: int                  # the share of the stake cashed out ...
    stake_bonus: int            # ... and its bonus part
    value: int                  # paid for it ...
    value_bonus: int            # ... of which to the bonus target
    final: bool                 # the whole (remaining) stake: the bet is cashed out


def plan_cash_out(bet: StoredBet, seq: int, stake: int, value: int, quote: dict[str, Any],
                  market_id: str) -> CashOutPlan:
    """Cash out `stake` of the open bet's remaining stake for `value`: that stake leaves play,
    the value goes to the player (its bonus share to the bonus target; a free bet's value is
    cash), the rest to or from the house. The caller checked the bet is open and
    0 < stake <= bet.stake."""
    stake_bonus = bonus_share(bet.stake_bonus, stake, bet.stake)
    if stake == bet.stake:
        stake_bonus = bet.stake_bonus
    value_bonus = bonus_share(value, stake_bonus, stake)
    returns = Returns(cash=value - value_bonus, bonus=value_bonus)
    key = cash_out_key(bet.id, seq)
    final = stake == bet.stake
    return CashOutPlan(
        posting=PlannedPosting(key, PostingKind.CASH_OUT, bet.id, _legs(bet, -stake, returns),
                               None, market_id, seq),
        record=_record(bet, RecordKind.CASH_OUT, seq, value, value, True,
                       "cashed_out" if final else "partly_cashed_out", key,
                       {"cash_out": {**quote, "stake": stake}}),
        stake=stake, stake_bonus=stake_bonus, value=value, value_bonus=value_bonus, final=final)


def plan_cash_out_reversal(bet: StoredBet, seq: int, stake: int, value: int, value_bonus: int,
                           reason: str, market_id: str) -> tuple[PlannedPosting,
                                                                 SettlementRecord]:
    """The exact reverse of cash-out `seq`: its stake back in play, its value back from the
    player (what their balances cannot cover becomes debt) and from or to the house."""
    key = cash_out_reversal_key(bet.id, seq)
    returns = Returns(cash=value - value_bonus, bonus=value_bonus)
    return (PlannedPosting(key, PostingKind.CASH_OUT_REVERSAL, bet.id,
                           _legs(bet, stake, -returns), cash_out_key(bet.id, seq), market_id,
                           seq),
            _record(bet, RecordKind.CASH_OUT_REVERSAL, seq, 0, -value, True,
                    "cash_out_reversed", key, {"reason": reason, "stake": stake}))


# --- market cancellation (UOF BetCancel / RollbackBetCancel) ---------------------------

def plan_cancel(bet: StoredBet, market_id: str, cancellation_id: int,
                detail: dict[str, Any]) -> Step | None:
    """Refund the bet in full: an open bet's stake back where it came from; a settled bet by
    the difference between the refund and what it was paid. None: nothing to refund (a
    cashed-out, cancelled or rejected bet)."""
    if bet.status not in (BetStatus.OPEN, BetStatus.SETTLED):
        return None
    refund = refund_for(bet)
    key = cancel_key(bet.id, cancellation_id)
    if bet.status == BetStatus.OPEN:
        legs = _legs(bet, -bet.stake, refund)
        corrects = None
    else:
        legs = _legs(bet, 0, refund - bet.returned)
        corrects = bet.settlement_key
    posting = (PlannedPosting(key, PostingKind.CANCEL, bet.id, legs, corrects, market_id,
                              cancellation_id) if legs else None)
    return Step(
        record=_record(bet, RecordKind.CANCELLATION, cancellation_id, refund.paid,
                       refund.paid - bet.paid, True, "cancelled",
                       key if posting else None, detail),
        posting=posting,
        update=_kept(bet, status=BetStatus.CANCELLED, payout=refund.paid,
                     settlement_key=key if posting else bet.settlement_key,
                     cancellation_id=cancellation_id, **_returned(refund)))


def plan_uncancel(bet: StoredBet, market_id: str, cancellation_id: int,
                  detail: dict[str, Any]) -> Step | None:
    """Undo the refund of cancellation `cancellation_id`: its exact reverse, and the bet open
    again one rollback generation later (its next settlement keys are new). None: the bet was
    not cancelled by it."""
    if bet.status != BetStatus.CANCELLED or bet.cancellation_id != cancellation_id:
        return None
    key = uncancel_key(bet.id, cancellation_id)
    return Step(
        record=_record(bet, RecordKind.CANCELLATION_ROLLBACK, cancellation_id, 0, -bet.paid,
                       True, "cancellation_rolled_back", key, detail),
        posting=PlannedPosting(key, PostingKind.CANCEL_ROLLBACK, bet.id,
                               _legs(bet, bet.stake, -bet.returned), bet.settlement_key,
                               market_id, cancellation_id),
        update=BetUpdate(bet.id, BetStatus.OPEN, 0, None, None, None,
                         rollbacks=bet.rollbacks + 1))
