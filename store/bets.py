"""Bets: taking a bet (stake into bets-in-play), reading a bet with its settlement history,
and the player's open debt.

`place(conn, ...)` is one command in the caller's transaction: gate check, the stake posting
(ledger key `bet:<id>:stake`), the bet and leg rows, the audit record and the outbox event
commit together. The betting engine's bet id is the idempotency key: the same bet again gets
the first answer back (an acceptance or a rejection), a different bet under a used id is a
conflict. Settling bets lives in store/settlements.py; this module never pays a bet out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, text

import audit
import ledger
import outbox
from compliance import gates
from domain import odds as odds_mod
from domain.settlement import Bet, BetType, Leg, PlaceTerms
from ledger import AccountRef, ResultCode, Transfer
from settlepay.config import Settings


@dataclass(frozen=True)
class LegRequest:
    market_id: str
    selection_id: str
    odds: str                       # as offered: "2.50", "10/1", "+150"
    odds_format: str | None = None  # None: detected from the text


@dataclass(frozen=True)
class BetRequest:
    bet_id: str
    player_id: str
    stake: int
    currency: str
    bet_type: str
    legs: tuple[LegRequest, ...]
    place_fraction: str | None = None   # each-way terms, e.g. "1/5"
    places: int | None = None
    ip_address: str | None = None       # the player's, for the geolocation gate (not part of the bet)

    def fingerprint(self) -> bytes:
        body = {"player_id": self.player_id, "stake": self.stake, "currency": self.currency,
                "bet_type": self.bet_type, "place_fraction": self.place_fraction,
                "places": self.places,
                "legs": [[l.market_id, l.selection_id, l.odds, l.odds_format] for l in self.legs]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()


class BetConflict(Exception):
    """The bet id was used before for a different bet."""


class InvalidBet(ValueError):
    """The bet cannot be taken as sent (bad odds, bad shape); nothing was written."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Placed:
    bet: dict[str, Any]
    replayed: bool

    @property
    def rejected(self) -> bool:
        return self.bet["status"] == "rejected"


def stake_key(bet_id: str) -> str:
    return f"bet:{bet_id}:stake"


def to_domain(req: BetRequest) -> tuple[Bet, list[tuple[str, Fraction]]]:
    """The pure bet, validated (InvalidBet otherwise), with each leg's (format, price)."""
    priced: list[tuple[str, Fraction]] = []
    for leg in req.legs:
        try:
            fmt = odds_mod.OddsFormat(leg.odds_format) if leg.odds_format else odds_mod.detect_format(leg.odds)
            priced.append((str(fmt), odds_mod.parse(leg.odds, fmt)))
        except (odds_mod.InvalidOdds, ValueError, TypeError) as error:
            raise InvalidBet("invalid_odds", str(error)) from error
    terms = None
    if req.place_fraction is not None or req.places is not None:
        try:
            terms = PlaceTerms(Fraction(str(req.place_fraction)), int(req.places or 0))
        except (ValueError, ZeroDivisionError) as error:
            raise InvalidBet("invalid_place_terms", f"place terms: {error}") from error
    try:
        bet = Bet(BetType(req.bet_type), req.stake,
                  tuple(Leg(l.market_id, l.selection_id, price) for l, (_, price) in zip(req.legs, priced)),
                  place_terms=terms)
    except ValueError as error:
        raise InvalidBet("invalid_bet", str(error)) from error
    return bet, priced


def place(conn: Connection, settings: Settings, req: BetRequest, *, actor: str) -> Placed:
    """Take the bet (or replay the first answer for its id). Raises BetConflict, InvalidBet."""
    # Two deliveries of the same bet at once: the second waits here, then replays the first.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('bet:' || :id))"), {"id": req.bet_id})
    existing = conn.execute(text("SELECT request_hash FROM bets WHERE id = :id"),
                            {"id": req.bet_id}).one_or_none()
    if existing is not None:
        if bytes(existing.request_hash) != req.fingerprint():
            raise BetConflict(f"bet {req.bet_id} was already placed with different details")
        return Placed(get(conn, req.bet_id), replayed=True)

    bet, priced = to_domain(req)
    settled_markets = conn.execute(
        text("SELECT market_id FROM market_results WHERE market_id = ANY(:m) AND status = 'current'"),
        {"m": sorted(bet.markets)}).scalars().all()

    decision = gates.check(conn, settings, gates.GateRequest(
        player_id=req.player_id, operation=gates.Operation.BET, amount=req.stake, currency=req.currency,
        ip_address=req.ip_address))
    reject: tuple[str, str] | None = None
    if not decision.allowed:
        reject = (decision.code, decision.reason)
    elif settled_markets:
        reject = ("market_settled", f"market {settled_markets[0]} already has a result")
    else:
        posted = ledger.post(conn, Transfer(
            key=stake_key(req.bet_id), kind="bet_stake", reference=req.bet_id,
            legs=(ledger.Leg(AccountRef.player_cash(req.player_id, req.currency), -req.stake),
                  ledger.Leg(AccountRef.bets_in_play(req.player_id, req.currency), req.stake))))
        if posted.code is ResultCode.INSUFFICIENT_FUNDS:
            reject = ("insufficient_funds", "the player's cash balance does not cover the stake")
        elif not posted.ok:
            raise RuntimeError(f"unexpected ledger result {posted.code} for the stake of bet {req.bet_id}")

    if reject is not None and conn.execute(text("SELECT 1 FROM players WHERE id = :id"),
                                           {"id": req.player_id}).scalar() is None:
        # A rejection is kept for replay, but a bet row must name a real player.
        raise InvalidBet(reject[0], reject[1])

    status = "rejected" if reject else "open"
    conn.execute(text("""
        INSERT INTO bets (id, player_id, currency, stake, bet_type, place_fraction, place_count,
                          status, reject_code, reject_reason, request_hash)
        VALUES (:id, :player, :currency, :stake, :type, :pf, :pc, :status, :rc, :rr, :hash)"""),
        {"id": req.bet_id, "player": req.player_id, "currency": req.currency, "stake": req.stake,
         "type": str(bet.bet_type), "status": status, "rc": reject[0] if reject else None,
         "rr": reject[1] if reject else None, "hash": req.fingerprint(),
         "pf": str(bet.place_terms.fraction) if bet.place_terms else None,
         "pc": bet.place_terms.places if bet.place_terms else None})
    conn.execute(text("""
        INSERT INTO bet_legs (bet_id, leg_no, market_id, selection_id, odds, odds_format, price_num, price_den)
        SELECT :bet, n, m, s, o, f, pn, pd
          FROM unnest(CAST(:n AS int[]), CAST(:m AS text[]), CAST(:s AS text[]), CAST(:o AS text[]),
                      CAST(:f AS text[]), CAST(:pn AS bigint[]), CAST(:pd AS bigint[])) AS t(n, m, s, o, f, pn, pd)"""),
        {"bet": req.bet_id, "n": list(range(1, len(req.legs) + 1)),
         "m": [l.market_id for l in req.legs], "s": [l.selection_id for l in req.legs],
         "o": [l.odds for l in req.legs], "f": [fmt for fmt, _ in priced],
         "pn": [p.numerator for _, p in priced], "pd": [p.denominator for _, p in priced]})
    record = get(conn, req.bet_id)
    summary = {k: record[k] for k in ("id", "player_id", "stake", "currency", "bet_type", "status",
                                       "reject_code")}
    audit.record(conn, actor=actor, action="bet.rejected" if reject else "bet.placed",
                 subject_type="bet", subject_id=req.bet_id, before=None, after=summary)
    partner = conn.execute(text("SELECT partner_id FROM players WHERE id = :id"),
                           {"id": req.player_id}).scalar()
    outbox.emit(conn, event_type="bet.rejected" if reject else "bet.placed", aggregate_type="bet",
                aggregate_id=req.bet_id, payload=summary, player_id=req.player_id, partner_id=partner)
    return Placed(record, replayed=False)


def get(conn: Connection, bet_id: str) -> dict[str, Any] | None:
    """The bet with its legs and every settlement version, oldest first; None if unknown."""
    row = conn.execute(text("""
        SELECT b.id, b.player_id, p.partner_id, b.currency, b.stake, b.bet_type, b.place_fraction,
               b.place_count, b.status, b.reject_code, b.reject_reason, b.paid, b.payout, b.version,
               b.placed_at, b.settled_at, b.updated_at
          FROM bets b JOIN players p ON p.id = b.player_id WHERE b.id = :id"""),
        {"id": bet_id}).mappings().one_or_none()
    if row is None:
        return None
    bet = dict(row)
    bet["legs"] = [dict(r) for r in conn.execute(text("""
        SELECT leg_no, market_id, selection_id, odds, odds_format,
               price_num::text || '/' || price_den::text AS price
          FROM bet_legs WHERE bet_id = :id ORDER BY leg_no"""), {"id": bet_id}).mappings()]
    bet["settlements"] = [dict(r) for r in conn.execute(text("""
        SELECT kind, version, market_id, payout, delta, applied, outcome, ledger_key, shortfall,
               results, created_at
          FROM bet_settlements WHERE bet_id = :id ORDER BY created_at, version"""), {"id": bet_id}).mappings()]
    return bet


def player_debt(conn: Connection, player_id: str, currency: str) -> int:
    """What the player owes from clawbacks their cash could not cover (minor units, >= 0).

    The debt is the player_debt ledger account: its balance goes negative by what is owed.
    Withdrawals are refused while this is above zero (see `has_open_debt`).
    """
    return max(0, -ledger.balance(conn, AccountRef.player_debt(player_id, currency)).posted)


def has_open_debt(conn: Connection, player_id: str) -> bool:
    """True when any of the player's debt accounts shows money owed (any currency)."""
    return any(b.account.type == ledger.AccountType.PLAYER_DEBT and b.posted < 0
               for b in ledger.balances(conn, f"player:{player_id}"))
