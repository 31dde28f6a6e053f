"""What one settlement step does to one bet, planned over plain values (no database, no ledger).

    plan_settle(bet, ...)    an open bet: settle it; a settled one: post the delta (new payout -
                             paid), keep a downgrade out (policy upgrade_only), or nothing
    plan_rollback(bet, ...)  a settled bet: the exact reverse of what was posted, bet open again

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
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from domain.settlement.each_way import PlaceTerms
from domain.settlement.payout import Bet, BetType, Leg, Pending, settle
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


class Account(StrEnum):
    """The accounts a settlement posting touches (the player's, in the bet's currency)."""
    BETS_IN_PLAY = "bets_in_play"
    PLAYER_CASH = "player_cash"
    HOUSE_REVENUE = "house_revenue"


class PostingKind(StrEnum):
    SETTLEMENT = "settlement"
    RESETTLEMENT = "resettlement"
    ROLLBACK = "settlement_rollback"


class RecordKind(StrEnum):
    """The kind of a row of a bet's settlement history (bet_settlements.kind)."""
    SETTLEMENT = "settlement"
    RESETTLEMENT = "resettlement"
    ROLLBACK = "rollback"


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


@dataclass(frozen=True)
class PlannedLeg:
    account: Account
    amount: int                     # signed minor units
    shortfall_to_debt: bool = False  # what player cash cannot cover becomes player debt


@dataclass(frozen=True)
class PlannedPosting:
    key: str
    kind: PostingKind
    bet_id: str
    legs: tuple[PlannedLeg, ...]
    corrects: str | None            # the key of the posting this one corrects
    market_id: str                  # the market whose run made it
    version: int                    # that run's result version


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


def settlement_version(bet: StoredBet, versions: Mapping[str, int]) -> int:
    """The sum of the current result versions of the bet's markets (each counted once)."""
    return sum(versions[m] for m in {leg[0] for leg in bet.legs})


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


# --- legs -----------------------------------------------------------------------------------

def settlement_legs(stake: int, payout: int) -> tuple[PlannedLeg, ...]:
    legs = [PlannedLeg(Account.BETS_IN_PLAY, -stake)]
    if payout:
        legs.append(PlannedLeg(Account.PLAYER_CASH, payout))
    if stake - payout:
        legs.append(PlannedLeg(Account.HOUSE_REVENUE, stake - payout))
    return tuple(legs)


def delta_legs(delta: int) -> tuple[PlannedLeg, ...]:
    return (PlannedLeg(Account.PLAYER_CASH, delta, shortfall_to_debt=delta < 0),
            PlannedLeg(Account.HOUSE_REVENUE, -delta))


def reversal_legs(stake: int, paid: int) -> tuple[PlannedLeg, ...]:
    legs = [PlannedLeg(Account.BETS_IN_PLAY, stake)]
    if paid > 0:
        legs.append(PlannedLeg(Account.PLAYER_CASH, -paid, shortfall_to_debt=True))
    elif paid < 0:  # cannot happen with payouts >= 0; kept so the reversal is always exact
        legs.append(PlannedLeg(Account.PLAYER_CASH, -paid))
    if stake - paid:
        legs.append(PlannedLeg(Account.HOUSE_REVENUE, -(stake - paid)))
    return tuple(legs)


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
              "rollbacks": bet.rollbacks}
    return BetUpdate(**{**fields, **changes})


def plan_review(bet: StoredBet, reason: str) -> Step:
    """The bet cannot be posted: flag it with the reason, leave its money where it is."""
    return Step(update=_kept(bet, needs_review=reason), review=reason)


def plan_rollback(bet: StoredBet, market_id: str, version: int,
                  used: dict[str, Any]) -> Step | None:
    """Reverse everything the bet's settlement posted and open it again, one rollback
    generation later (None: not settled)."""
    if bet.status != BetStatus.SETTLED or bet.version is None:
        return None
    key = rollback_key(bet.id, bet.version, bet.rollbacks)
    return Step(
        record=_record(bet, RecordKind.ROLLBACK, bet.version, 0, -bet.paid, True,
                       "rolled_back", key, used),
        posting=PlannedPosting(key, PostingKind.ROLLBACK, bet.id,
                               reversal_legs(bet.stake, bet.paid), bet.settlement_key,
                               market_id, version),
        update=BetUpdate(bet.id, BetStatus.OPEN, 0, None, None, None,
                         rollbacks=bet.rollbacks + 1))


def plan_settle(bet: StoredBet, market_id: str, results: Results, versions: Mapping[str, int],
                used: dict[str, Any], *, upgrade_only: bool) -> Step | None:
    """Settle an open bet, or post the delta of a settled one (None: nothing to do)."""
    settled = settle(domain_bet(bet.bet_type, bet.stake, bet.legs, bet.place_fraction,
                                bet.place_count), results)
    if isinstance(settled, Pending):
        return Step(pending=True)
    version = settlement_version(bet, versions)
    outcome, payout = str(settled.outcome), settled.payout
    if payout > PAYOUT_MINOR_MAX:
        return plan_review(bet, f"payout {payout} is above the most one bet can return "
                                f"({PAYOUT_MINOR_MAX} minor units)")
    key = settlement_key(bet.id, version, bet.rollbacks)

    if bet.status == BetStatus.OPEN:
        return Step(
            record=_record(bet, RecordKind.SETTLEMENT, version, payout, payout, True, outcome,
                           key, used),
            posting=PlannedPosting(key, PostingKind.SETTLEMENT, bet.id,
                                   settlement_legs(bet.stake, payout), None, market_id, version),
            update=_kept(bet, status=BetStatus.SETTLED, paid=payout, payout=payout,
                         version=version, settlement_key=key))
    if bet.version is not None and version <= bet.version:
        return None   # already settled against these results (a re-run): nothing to do
    delta = payout - bet.paid
    if delta == 0:
        if bet.payout != payout:   # back to what was paid after a kept-out downgrade
            return Step(update=_kept(bet, payout=payout))
        return None   # unchanged: no posting, no new version
    if delta < 0 and upgrade_only:
        return Step(
            record=_record(bet, RecordKind.RESETTLEMENT, version, payout, 0, False, outcome,
                           None, used),
            update=_kept(bet, payout=payout, version=version),
            skipped=True)
    return Step(
        record=_record(bet, RecordKind.RESETTLEMENT, version, payout, delta, True, outcome,
                       key, used),
        posting=PlannedPosting(key, PostingKind.RESETTLEMENT, bet.id, delta_legs(delta),
                               bet.settlement_key, market_id, version),
        update=_kept(bet, paid=payout, payout=payout, version=version))
