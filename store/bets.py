"""The bets and bet_legs tables: insert a bet with its legs, find it, read it with its
settlement history. SQL only.

A bet row's `id` is internal (`<partner>/<external id>`, see migration 0008): the betting
engine's id (`external_id`) is unique per partner only. Taking a bet (gates, the stake posting,
audit, outbox) is the command in commands/bets.py; settling bets is store/settlements.py.
This module must never decide whether a bet is taken, move money, or write audit or outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from store.pagination import Listing

# GET /v1/bets pages (store/pagination.py) by internal id, newest first by placed_at, on the
# bets_list* indexes (migration 0015).
LISTING = Listing("bets", "id", created_column="placed_at")


@dataclass(frozen=True)
class LegRow:
    market_id: str
    selection_id: str
    odds: str               # as offered
    odds_format: str        # decimal | fractional | american
    price_num: int          # the exact decimal price
    price_den: int


def lock(conn: Connection, bet_id: str) -> None:
    """Serialise writers of one bet (internal id) until the caller's transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('bet:' || :id))"), {"id": bet_id})


def find(conn: Connection, partner_id: str, external_id: str) -> RowMapping | None:
    """The partner's bet with this engine id: its internal `id` and `request_hash`; or None."""
    return conn.execute(text("""
        SELECT id, request_hash FROM bets
         WHERE partner_id = :partner AND external_id = :external"""),
        {"partner": partner_id, "external": external_id}).mappings().one_or_none()


def ids_for(conn: Connection, external_id: str, *, partner_id: str | None = None) -> list[str]:
    """Internal ids of the bets with this engine id (of one partner, or of every partner)."""
    sql = "SELECT id FROM bets WHERE external_id = :external"
    if partner_id is not None:
        sql += " AND partner_id = :partner"
    return list(conn.execute(text(sql + " ORDER BY id"),
                             {"external": external_id, "partner": partner_id}).scalars())


def insert(conn: Connection, *, bet_id: str, partner_id: str, external_id: str,
           player_id: str, currency: str, stake: int, bet_type: str,
           place_fraction: str | None, place_count: int | None, status: str,
           reject_code: str | None, reject_reason: str | None, request_hash: bytes,
           legs: Sequence[LegRow]) -> None:
    """Insert the bet and its legs (numbered from 1, in the order given)."""
    conn.execute(text("""
        INSERT INTO bets (id, partner_id, external_id, player_id, currency, stake, bet_type,
                          place_fraction, place_count, status, reject_code, reject_reason,
                          request_hash)
        VALUES (:id, :partner, :external, :player, :currency, :stake, :type, :pf, :pc, :status,
                :rc, :rr, :hash)"""),
        {"id": bet_id, "partner": partner_id, "external": external_id, "player": player_id,
         "currency": currency, "stake": stake, "type": bet_type, "pf": place_fraction,
         "pc": place_count, "status": status, "rc": reject_code, "rr": reject_reason,
         "hash": request_hash})
    conn.execute(text("""
        INSERT INTO bet_legs (bet_id, leg_no, market_id, selection_id, odds, odds_format,
                              price_num, price_den)
        SELECT :bet, n, m, s, o, f, pn, pd
          FROM unnest(CAST(:n AS int[]), CAST(:m AS text[]), CAST(:s AS text[]),
                      CAST(:o AS text[]), CAST(:f AS text[]), CAST(:pn AS bigint[]),
                      CAST(:pd AS bigint[])) AS t(n, m, s, o, f, pn, pd)"""),
        {"bet": bet_id, "n": list(range(1, len(legs) + 1)),
         "m": [leg.market_id for leg in legs], "s": [leg.selection_id for leg in legs],
         "o": [leg.odds for leg in legs], "f": [leg.odds_format for leg in legs],
         "pn": [leg.price_num for leg in legs], "pd": [leg.price_den for leg in legs]})


def get(conn: Connection, bet_id: str) -> dict[str, Any] | None:
    """The bet (internal id) with its legs and every settlement version, oldest first."""
    row = conn.execute(text("""
        SELECT id, partner_id, external_id, player_id, currency, stake, bet_type,
               place_fraction, place_count, status, reject_code, reject_reason, paid, payout,
               version, placed_at, settled_at, updated_at
          FROM bets WHERE id = :id"""), {"id": bet_id}).mappings().one_or_none()
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
          FROM bet_settlements WHERE bet_id = :id ORDER BY created_at, version"""),
        {"id": bet_id}).mappings()]
    return bet
