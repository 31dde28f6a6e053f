"""Taking a bet: the stake into bets in play, the bet and its legs, audit and outbox, together.

    placed = place(conn, settings, request, actor=...)   # in the caller's transaction
    bet_resource(placed.bet)                             # the bet as the API and events show it
    cash_out(conn, settings, bet_id, CashOutRequest(...), actor=...)   # all or a share
    reverse_cash_out(conn, settings, bet_id, reason=..., actor=...)    # palpable error

Funding: a bet is staked in cash (`funding` cash: player cash and, per
`settings.bonus_stake_order`, bonus funds; commands/promotions.py) or with a free bet
(`funding` free_bet: the free-bet balance into free bets in play; it pays winnings only).

The betting engine's bet id is the idempotency key, per partner (a bet belongs to its player's
partner): the same bet again gets the first answer back (an acceptance or a rejection), another
bet under a used id is a conflict, and another partner's bet with the same id is another bet.
The bet row's id is internal, `<partner>/<bet id>`; the ledger keys derive from it (stake
`bet:<id>:stake`, settlements `bet:<id>:v<version>`), so they never clash across partners.

What decides, in order of precedence (the first that applies answers):

    bet_id_conflict        409  this partner used the id for a different bet (nothing written)
    invalid_odds, invalid_place_terms, invalid_bet
                           422  the bet cannot be taken as sent (nothing written)
    payout_above_maximum   422  if every leg won it would return more than
                                `settings.bet_payout_max_minor` (nothing written)
    a compliance gate's code    the player may not bet now (kept as a rejected bet)
    market_settled, market_closed
                           409  a market of the bet has a result, or had one (kept as rejected;
                                `commands.settlement.betting_refusal`, codes SettlementRefusal)
    insufficient_funds     402  the player's cash (and bonus funds) do not cover the stake
                                (kept as rejected)
    insufficient_free_bet  402  a free bet: the free-bet balance does not cover the stake
                                (kept as rejected)

Past-posting: placement takes each of the bet's markets' advisory lock SHARED, in sorted order,
and checks the markets under it; recording a result takes the same locks EXCLUSIVE. So a bet
that passed the check commits before the result is recorded (and is settled with the market),
and a bet that comes after the result is refused.

A rejected bet is stored, so the same bet sent again is refused the same way.
Must never: open its own transaction, pay a bet out (settlement does), or take a bet whose
largest possible return the ledger's bigint amounts could not hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection

import audit
import ledger
import outbox
from commands import promotions
from commands import settlement as settlement_commands
from compliance import gates
from domain import odds as odds_mod
from domain.settlement import Bet, BetType, Leg, PlaceTerms, max_payout
from domain.settlement.plan import BetStatus as SettledStatus
from domain.settlement.plan import Funding, plan_cash_out, plan_cash_out_reversal
from ledger import Transfer
from settlepay.config import Settings
from store import bets as store
from store import players
from store import settlements as settlement_store
from workflows.contracts.refusal import Refusal
from workflows.contracts.settlement import SettlementRefusal


class BetStatus(StrEnum):
    OPEN = "open"
    SETTLED = "settled"
    REJECTED = "rejected"
    CASHED_OUT = "cashed_out"
    CANCELLED = "cancelled"


class BetRefusal(StrEnum):
    """Why a bet is not taken (besides a compliance gate's own code); see the module docstring."""

    BET_ID_CONFLICT = "bet_id_conflict"
    INVALID_ODDS = "invalid_odds"
    INVALID_PLACE_TERMS = "invalid_place_terms"
    INVALID_BET = "invalid_bet"
    PAYOUT_ABOVE_MAXIMUM = "payout_above_maximum"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    # Reading, not placing: an operator asked for a bet id that several partners use.
    BET_ID_AMBIGUOUS = "bet_id_ambiguous"
    # Cash-out (see `cash_out`).
    BET_SETTLED = "bet_settled"                    # too late: the bet is settled
    BET_CASHED_OUT = "bet_cashed_out"              # already cashed out in full
    BET_NOT_OPEN = "bet_not_open"                  # rejected, cancelled or flagged for review
    CASH_OUT_QUOTE_EXPIRED = "cash_out_quote_expired"
    CASH_OUT_QUOTE_CONFLICT = "cash_out_quote_conflict"   # a quote id reused for another
    INVALID_CASH_OUT = "invalid_cash_out"          # a share or value that cannot be applied
    CASH_OUT_NOT_FOUND = "cash_out_not_found"      # a reversal of a bet not cashed out
    CASH_OUT_REVERSAL_DISABLED = "cash_out_reversal_disabled"


PLAYER_NOT_FOUND = "player_not_found"   # the compliance gates' code, answered before any lock


@dataclass(frozen=True)
class LegRequest:
    market_id: str
    selection_id: str
    odds: str                       # as offered: "2.50", "10/1", "+150"
    odds_format: str | None = None  # None: detected from the text


@dataclass(frozen=True)
class BetRequest:
    bet_id: str                         # the betting engine's id (unique per partner)
    player_id: str
    stake: int
    currency: str
    bet_type: str
    legs: tuple[LegRequest, ...]
    place_fraction: str | None = None   # each-way terms, e.g. "1/5"
    places: int | None = None
    ip_address: str | None = None       # the player's, for the geolocation gate (not the bet's)
    funding: str = Funding.CASH         # cash (and bonus funds) or free_bet

    def fingerprint(self) -> bytes:
        body = {"player_id": self.player_id, "stake": self.stake, "currency": self.currency,
                "bet_type": self.bet_type, "place_fraction": self.place_fraction,
                "places": self.places,
                "legs": [[leg.market_id, leg.selection_id, leg.odds, leg.odds_format]
                         for leg in self.legs]}
        if self.funding != Funding.CASH:   # cash bets keep the fingerprint they always had
            body["funding"] = str(self.funding)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()


class BetRefused(Exception):
    """The bet cannot be taken as sent; nothing was written. `refusal` says why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.refusal = Refusal(str(code), reason)


@dataclass(frozen=True)
class Placed:
    bet: dict[str, Any]        # the stored bet with legs and settlements (store.bets.get)
    replayed: bool

    @property
    def refusal(self) -> Refusal | None:
        """Why the bet was rejected (it is stored as such), or None for a bet taken."""
        if self.bet["status"] != BetStatus.REJECTED:
            return None
        return Refusal(self.bet["reject_code"], self.bet["reject_reason"])


def internal_id(partner_id: str, bet_id: str) -> str:
    """The bet row's id: the engine's bet id within its partner (a bet id has no "/")."""
    return f"{partner_id}/{bet_id}"


def stake_key(bet_id: str) -> str:
    """Ledger key of the stake posting of the bet with this internal id."""
    return f"bet:{bet_id}:stake"


def to_domain(req: BetRequest) -> tuple[Bet, list[store.LegRow]]:
    """The pure bet, validated (BetRefused otherwise), and the leg rows to store."""
    rows: list[store.LegRow] = []
    for leg in req.legs:
        try:
            fmt = (odds_mod.OddsFormat(leg.odds_format) if leg.odds_format
                   else odds_mod.detect_format(leg.odds))
            price = odds_mod.parse(leg.odds, fmt)
        except (odds_mod.InvalidOdds, ValueError, TypeError) as error:
            raise BetRefused(BetRefusal.INVALID_ODDS, str(error)) from error
        rows.append(store.LegRow(leg.market_id, leg.selection_id, leg.odds, str(fmt),
                                 price.numerator, price.denominator))
    terms = None
    if req.place_fraction is not None or req.places is not None:
        try:
            terms = PlaceTerms(Fraction(str(req.place_fraction)), int(req.places or 0))
        except (ValueError, ZeroDivisionError) as error:
            raise BetRefused(BetRefusal.INVALID_PLACE_TERMS, f"place terms: {error}") from error
    try:
        bet = Bet(BetType(req.bet_type), req.stake,
                  tuple(Leg(row.market_id, row.selection_id, Fraction(row.price_num, row.price_den))
                        for row in rows),
                  place_terms=terms)
    except ValueError as error:
        raise BetRefused(BetRefusal.INVALID_BET, str(error)) from error
    return bet, rows


def check_payout_bound(settings: Settings, bet: Bet) -> None:
    """Refuse a bet whose largest possible return is above the configured maximum."""
    most = max_payout(bet)
    if most > settings.bet_payout_max_minor:
        raise BetRefused(BetRefusal.PAYOUT_ABOVE_MAXIMUM,
                         f"if every leg won the bet would return {most} minor units; a bet may "
                         f"return at most {settings.bet_payout_max_minor}")


def place(conn: Connection, settings: Settings, req: BetRequest, *, actor: str) -> Placed:
    """Take the bet (or replay the first answer for its id). Raises BetRefused."""
    player = players.get(conn, req.player_id)
    if player is None:
        raise BetRefused(PLAYER_NOT_FOUND, f"player {req.player_id} does not exist")
    partner_id = player["partner_id"]
    bet_id = internal_id(partner_id, req.bet_id)
    # Two deliveries of the same bet at once: the second waits here, then replays the first.
    store.lock(conn, bet_id)
    existing = store.find(conn, partner_id, req.bet_id)
    if existing is not None:
        if bytes(existing["request_hash"]) != req.fingerprint():
            raise BetRefused(BetRefusal.BET_ID_CONFLICT,
                             f"bet {req.bet_id} was already placed with different details")
        return Placed(_read(conn, existing["id"]), replayed=True)

    bet, legs = to_domain(req)
    check_payout_bound(settings, bet)
    market_refusal = settlement_commands.betting_refusal(conn, bet.markets)   # locks, sorted
    refusal, stake = _refusal(conn, settings, req, bet_id, market_refusal, actor)

    store.insert(conn, bet_id=bet_id, partner_id=partner_id, external_id=req.bet_id,
                 player_id=req.player_id, currency=req.currency, stake=req.stake,
                 bet_type=str(bet.bet_type),
                 place_fraction=str(bet.place_terms.fraction) if bet.place_terms else None,
                 place_count=bet.place_terms.places if bet.place_terms else None,
                 status=BetStatus.REJECTED if refusal else BetStatus.OPEN,
                 reject_code=refusal.code if refusal else None,
                 reject_reason=refusal.reason if refusal else None,
                 request_hash=req.fingerprint(), legs=legs, funding=str(req.funding),
                 stake_bonus=stake.stake_bonus if stake else 0,
                 bonus_id=stake.bonus_id if stake else None)
    record = _read(conn, bet_id)
    action = "bet.rejected" if refusal else "bet.placed"
    audit.record(conn, actor=actor, action=action, subject_type="bet", subject_id=bet_id,
                 before=None, after=_summary(record))
    outbox.emit(conn, event_type=action, aggregate_type="bet", aggregate_id=bet_id,
                payload=bet_resource(record), player_id=req.player_id, partner_id=partner_id)
    return Placed(record, replayed=False)


def _refusal(conn: Connection, settings: Settings, req: BetRequest, bet_id: str,
             market_refusal: Refusal | None,
             actor: str) -> tuple[Refusal | None, promotions.StakePlan | None]:
    """Why the bet is rejected (gates, then its markets, then funds), or (None, where its
    stake came from) once its stake is posted."""
    decision = gates.check(conn, settings, gates.GateRequest(
        player_id=req.player_id, operation=gates.Operation.BET, amount=req.stake,
        currency=req.currency, ip_address=req.ip_address))
    if decision.refusal is not None:
        return decision.refusal, None
    if market_refusal is not None:
        return market_refusal, None
    funding = Funding(req.funding)
    stake = promotions.stake_plan(conn, settings, player_id=req.player_id,
                                  currency=req.currency, stake=req.stake, funding=funding,
                                  actor=actor)
    posted = ledger.post(conn, Transfer(key=stake_key(bet_id), kind="bet_stake",
                                        reference=bet_id, legs=stake.legs))
    short = promotions.insufficient(funding, posted.code)
    if short is not None:
        return short, None
    if not posted.ok:
        raise RuntimeError(f"unexpected ledger result {posted.code} for the stake of bet {bet_id}")
    return None, stake


def _read(conn: Connection, bet_id: str) -> dict[str, Any]:
    bet = store.get(conn, bet_id)
    if bet is None:  # pragma: no cover - read in the transaction that found or wrote it
        raise LookupError(f"bet {bet_id} vanished inside its own transaction")
    return bet


def _summary(bet: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit record keeps of a new bet."""
    return {"id": bet["id"], "external_id": bet["external_id"], "partner_id": bet["partner_id"],
            "player_id": bet["player_id"], "stake": bet["stake"],
            "currency": bet["currency"].strip(), "bet_type": bet["bet_type"],
            "status": bet["status"], "reject_code": bet["reject_code"]}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def bet_resource(bet: Mapping[str, Any]) -> dict[str, Any]:
    """The bet as a Stripe-like resource (JSON values): the API's response and the events'
    payload. `id` is the betting engine's id (the partner's own name for the bet)."""
    return {
        "object": "bet",
        "id": bet["external_id"],
        "partner_id": bet["partner_id"],
        "player_id": bet["player_id"],
        "currency": bet["currency"].strip(),
        "stake": bet["stake"],
        "bet_type": bet["bet_type"],
        "each_way": ({"place_fraction": bet["place_fraction"], "places": bet["place_count"]}
                     if bet["place_fraction"] else None),
        "status": bet["status"],
        "reject_code": bet["reject_code"],
        "reject_reason": bet["reject_reason"],
        "funding": bet["funding"],
        "stake_bonus": bet["stake_bonus"],
        "bonus_id": bet["bonus_id"],
        "paid": bet["paid"],
        "paid_bonus": bet["paid_bonus"],
        "returned_free_bet": bet["returned_free_bet"],
        "cashed_out_stake": bet["cashed_out_stake"],
        "cashed_out_value": bet["cashed_out_value"],
        "cash_outs": [{**c, "quote_expires_at": _iso(c["quote_expires_at"]),
                       "created_at": _iso(c["created_at"]),
                       "reversed_at": _iso(c["reversed_at"])}
                      for c in bet["cash_out_history"]],
        "needs_review": bet["needs_review"],
        "payout": bet["payout"],
        "version": bet["version"],
        "placed_at": _iso(bet["placed_at"]),
        "settled_at": _iso(bet["settled_at"]),
        "updated_at": _iso(bet["updated_at"]),
        "legs": [dict(leg) for leg in bet["legs"]],
        "settlements": [{**entry, "created_at": _iso(entry["created_at"])}
                        for entry in bet["settlements"]],
    }


# --- cash-out -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CashOutRequest:
    quote_id: str               # the betting engine's quote: used once per bet
    value: int                  # what the engine quoted for the share, minor units
    expires_at: datetime        # the quote's expiry
    stake: int | None = None    # the share of the remaining stake (None: all of it)

    def fingerprint(self) -> bytes:
        body = [self.quote_id, self.value, self.expires_at.isoformat(), self.stake]
        return hashlib.sha256(json.dumps(body).encode()).digest()


def _refuse(code: BetRefusal, reason: str) -> BetRefused:
    return BetRefused(code, reason)


def _locked_bet(conn: Connection, bet_id: str) -> tuple[dict[str, Any], Any]:
    """The bet's markets' shared locks (sorted: ordered with results and cancellations, as
    placement is), then the bet row's lock (ordered with settlement batches)."""
    record = _read(conn, bet_id)
    settlement_store.lock_markets_shared(conn, [leg["market_id"] for leg in record["legs"]])
    stored = settlement_store.bet_for_update(conn, bet_id)
    assert stored is not None
    return _read(conn, bet_id), stored


def cash_out(conn: Connection, settings: Settings, bet_id: str, req: CashOutRequest, *,
             actor: str, now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Cash out the open bet (internal id), all of its remaining stake or a share, for the
    quoted value: one balanced posting (`bet:<id>:cashout`, a later partial one
    `bet:<id>:cashout:<n>`): the stake out of play, the value to the player, the rest to or
    from the house. Returns (the bet, replayed); raises BetRefused.

    Refused once the bet is settled (or cancelled), once every market of the bet has a
    result (it is being settled), and after the quote's expiry. A whole cash-out is final:
    settlement, corrections and rollbacks leave the bet alone. The same quote again replays.
    """
    now = now or datetime.now(UTC)
    record, bet = _locked_bet(conn, bet_id)
    seen = store.cash_out_by_quote(conn, bet_id, req.quote_id)
    if seen is not None:
        if bytes(seen["request_hash"]) != req.fingerprint():
            raise _refuse(BetRefusal.CASH_OUT_QUOTE_CONFLICT,
                          f"quote {req.quote_id} was used for another cash-out of this bet")
        return record, True
    if bet.status == SettledStatus.SETTLED:
        raise _refuse(BetRefusal.BET_SETTLED, f"bet {record['external_id']} is settled")
    if bet.status == SettledStatus.CASHED_OUT:
        raise _refuse(BetRefusal.BET_CASHED_OUT,
                      f"bet {record['external_id']} is already cashed out")
    if bet.status != SettledStatus.OPEN or record["needs_review"] is not None:
        raise _refuse(BetRefusal.BET_NOT_OPEN,
                      f"bet {record['external_id']} is {record['status']}"
                      + (" and flagged for review" if record["needs_review"] else ""))
    if now >= req.expires_at:
        raise _refuse(BetRefusal.CASH_OUT_QUOTE_EXPIRED,
                      f"quote {req.quote_id} expired at {req.expires_at.isoformat()}")
    markets = sorted({leg["market_id"] for leg in record["legs"]})
    if settlement_store.markets_with_current_result(conn, markets) == markets:
        raise BetRefused(SettlementRefusal.MARKET_SETTLED,
                         f"every market of bet {record['external_id']} has a result: it is "
                         "being settled")
    share = bet.stake if req.stake is None else req.stake
    if not 0 < share <= bet.stake or req.value < 0:
        raise _refuse(BetRefusal.INVALID_CASH_OUT,
                      f"a cash-out takes 1 to {bet.stake} of the remaining stake, for a value "
                      "of 0 or more")
    if record["bet_type"] == BetType.EACH_WAY and share % 2:
        raise _refuse(BetRefusal.INVALID_CASH_OUT,
                      "an each-way bet is cashed out in two equal parts: an even share")
    if req.value > settings.bet_payout_max_minor:
        raise _refuse(BetRefusal.INVALID_CASH_OUT,
                      f"a cash-out pays at most {settings.bet_payout_max_minor} minor units")
    [bet], _ = settlement_commands.with_bonus_targets(conn, [bet], actor=actor, now=now)
    seq = record["cash_outs"] + 1
    quote = {"quote_id": req.quote_id, "value": req.value,
             "expires_at": req.expires_at.isoformat()}
    plan = plan_cash_out(bet, seq, share, req.value, quote, markets[0])
    posted = ledger.post(conn, settlement_commands.transfer_of(plan.posting, bet.player_id,
                                                               bet.currency))
    if not posted.ok:
        raise RuntimeError(f"ledger refused cash-out {plan.posting.key}: {posted.code}")
    store.insert_cash_out(conn, bet_id=bet_id, seq=seq, quote_id=req.quote_id,
                          quote_expires_at=req.expires_at, stake=plan.stake,
                          stake_bonus=plan.stake_bonus, value=plan.value,
                          value_bonus=plan.value_bonus, ledger_key=plan.posting.key,
                          request_hash=req.fingerprint(), created_by=actor)
    settlement_store.insert_records(conn, markets[0], [plan.record],
                                    {plan.posting.key: (posted.transaction_id,
                                                        posted.shortfall)})
    after = _read(conn, bet_id)
    audit.record(conn, actor=actor, action="bet.cashed_out", subject_type="bet",
                 subject_id=bet_id, before={"status": record["status"],
                                            "cashed_out_stake": record["cashed_out_stake"]},
                 after={"status": after["status"], "cashed_out_stake": after["cashed_out_stake"],
                        "value": plan.value, "quote_id": req.quote_id,
                        "ledger_key": plan.posting.key})
    outbox.emit(conn, event_type="bet.cashed_out", aggregate_type="bet", aggregate_id=bet_id,
                payload=bet_resource(after), player_id=bet.player_id,
                partner_id=bet.partner_id)
    return after, False


def reverse_cash_out(conn: Connection, settings: Settings, bet_id: str, *, reason: str,
                     actor: str) -> dict[str, Any]:
    """An operator reverses the bet's latest cash-out (a palpable error), if the operator
    setting allows it: the exact reverse of its posting (what the player's balances cannot
    cover becomes debt), the bet open again and, when every market of it has a result, settled
    against it at once. Refused for a bet since settled (roll its market back first)."""
    if not settings.cash_out_reversal_enabled:
        raise _refuse(BetRefusal.CASH_OUT_REVERSAL_DISABLED,
                      "reversing cash-outs is switched off (cash_out_reversal_enabled)")
    record, bet = _locked_bet(conn, bet_id)
    last = store.last_cash_out(conn, bet_id)
    if last is None:
        raise _refuse(BetRefusal.CASH_OUT_NOT_FOUND,
                      f"bet {record['external_id']} has no cash-out to reverse")
    if bet.status not in (SettledStatus.OPEN, SettledStatus.CASHED_OUT):
        raise _refuse(BetRefusal.BET_SETTLED if bet.status == SettledStatus.SETTLED
                      else BetRefusal.BET_NOT_OPEN,
                      f"bet {record['external_id']} is {bet.status}: its cash-out stands")
    [bet], _ = settlement_commands.with_bonus_targets(conn, [bet], actor=actor)
    markets = sorted({leg["market_id"] for leg in record["legs"]})
    posting, history = plan_cash_out_reversal(bet, last["seq"], last["stake"], last["value"],
                                              last["value_bonus"], reason, markets[0])
    posted = ledger.post(conn, settlement_commands.transfer_of(posting, bet.player_id,
                                                               bet.currency))
    if not posted.ok:
        raise RuntimeError(f"ledger refused cash-out reversal {posting.key}: {posted.code}")
    store.mark_cash_out_reversed(conn, bet_id, last["seq"], actor, reason)
    settlement_store.insert_records(conn, markets[0], [history],
                                    {posting.key: (posted.transaction_id, posted.shortfall)})
    audit.record(conn, actor=actor, action="bet.cash_out_reversed", subject_type="bet",
                 subject_id=bet_id, before={"status": record["status"]},
                 after={"cash_out": last["seq"], "reason": reason, "ledger_key": posting.key,
                        "shortfall": posted.shortfall})
    settlement_commands.settle_now(conn, settings, [bet_id], markets[0], actor=actor)
    after = _read(conn, bet_id)
    outbox.emit(conn, event_type="bet.cash_out_reversed", aggregate_type="bet",
                aggregate_id=bet_id, payload=bet_resource(after), player_id=bet.player_id,
                partner_id=bet.partner_id)
    return after
