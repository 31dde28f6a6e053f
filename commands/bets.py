"""Taking a bet: the stake into bets in play, the bet and its legs, audit and outbox, together.

    placed = place(conn, settings, request, actor=...)   # in the caller's transaction
    bet_resource(placed.bet)                             # the bet as the API and events show it

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
    insufficient_funds     402  the player's cash does not cover the stake (kept as rejected)

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
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection

import audit
import ledger
import outbox
from commands import settlement as settlement_commands
from compliance import gates
from domain import odds as odds_mod
from domain.settlement import Bet, BetType, Leg, PlaceTerms, max_payout
from ledger import AccountRef, ResultCode, Transfer
from settlepay.config import Settings
from store import bets as store
from store import players
from workflows.contracts.refusal import Refusal


class BetStatus(StrEnum):
    OPEN = "open"
    SETTLED = "settled"
    REJECTED = "rejected"


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

    def fingerprint(self) -> bytes:
        body = {"player_id": self.player_id, "stake": self.stake, "currency": self.currency,
                "bet_type": self.bet_type, "place_fraction": self.place_fraction,
                "places": self.places,
                "legs": [[leg.market_id, leg.selection_id, leg.odds, leg.odds_format]
                         for leg in self.legs]}
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
    refusal = _refusal(conn, settings, req, bet_id, market_refusal)

    store.insert(conn, bet_id=bet_id, partner_id=partner_id, external_id=req.bet_id,
                 player_id=req.player_id, currency=req.currency, stake=req.stake,
                 bet_type=str(bet.bet_type),
                 place_fraction=str(bet.place_terms.fraction) if bet.place_terms else None,
                 place_count=bet.place_terms.places if bet.place_terms else None,
                 status=BetStatus.REJECTED if refusal else BetStatus.OPEN,
                 reject_code=refusal.code if refusal else None,
                 reject_reason=refusal.reason if refusal else None,
                 request_hash=req.fingerprint(), legs=legs)
    record = _read(conn, bet_id)
    action = "bet.rejected" if refusal else "bet.placed"
    audit.record(conn, actor=actor, action=action, subject_type="bet", subject_id=bet_id,
                 before=None, after=_summary(record))
    outbox.emit(conn, event_type=action, aggregate_type="bet", aggregate_id=bet_id,
                payload=bet_resource(record), player_id=req.player_id, partner_id=partner_id)
    return Placed(record, replayed=False)


def _refusal(conn: Connection, settings: Settings, req: BetRequest, bet_id: str,
             market_refusal: Refusal | None) -> Refusal | None:
    """Why the bet is rejected (gates, then its markets, then funds), or None once its stake
    is posted."""
    decision = gates.check(conn, settings, gates.GateRequest(
        player_id=req.player_id, operation=gates.Operation.BET, amount=req.stake,
        currency=req.currency, ip_address=req.ip_address))
    if decision.refusal is not None:
        return decision.refusal
    if market_refusal is not None:
        return market_refusal
    posted = ledger.post(conn, Transfer(
        key=stake_key(bet_id), kind="bet_stake", reference=bet_id,
        legs=(ledger.Leg(AccountRef.player_cash(req.player_id, req.currency), -req.stake),
              ledger.Leg(AccountRef.bets_in_play(req.player_id, req.currency), req.stake))))
    if posted.code is ResultCode.INSUFFICIENT_FUNDS:
        return Refusal(BetRefusal.INSUFFICIENT_FUNDS,
                       "the player's cash balance does not cover the stake")
    if not posted.ok:
        raise RuntimeError(f"unexpected ledger result {posted.code} for the stake of bet {bet_id}")
    return None


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
        "paid": bet["paid"],
        "payout": bet["payout"],
        "version": bet["version"],
        "placed_at": _iso(bet["placed_at"]),
        "settled_at": _iso(bet["settled_at"]),
        "updated_at": _iso(bet["updated_at"]),
        "legs": [dict(leg) for leg in bet["legs"]],
        "settlements": [{**entry, "created_at": _iso(entry["created_at"])}
                        for entry in bet["settlements"]],
    }
