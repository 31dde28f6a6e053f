"""The bets, bet_legs and bet_cash_outs tables: insert a bet with its legs, find it, read it
with its settlement history, record a cash-out (and its reversal). SQL only.

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
           legs: Sequence[LegRow], funding: str = "cash", stake_bonus: int = 0,
           bonus_id: str | None = None) -> None:
    """Insert the bet and its legs (numbered from 1, in the order given)."""
    conn.execute(text("""
        INSERT INTO bets (id, partner_id, external_id, player_id, currency, stake, bet_type,
                          place_fraction, place_count, status, reject_code, reject_reason,
                          request_hash, funding, stake_bonus, bonus_id)
        VALUES (:id, :partner, :external, :player, :currency, :stake, :type, :pf, :pc, :status,
                :rc, :rr, :hash, :funding, :stake_bonus, :bonus)"""),
        {"id": bet_id, "partner": partner_id, "external": external_id, "player": player_id,
         "currency": currency, "stake": stake, "type": bet_type, "pf": place_fraction,
         "pc": place_count, "status": status, "rc": reject_code, "rr": reject_reason,
         "hash": request_hash, "funding": funding, "stake_bonus": stake_bonus,
         "bonus": bonus_id})
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
               version, placed_at, settled_at, updated_at, funding, stake_bonus, bonus_id,
               paid_bonus, returned_free_bet, cashed_out_stake, cashed_out_value, cash_outs,
               cancellation_id, needs_review
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
    bet["cash_out_history"] = [dict(r) for r in conn.execute(text("""
        SELECT seq, quote_id, quote_expires_at, stake, value, ledger_key, state, created_at,
               reversed_at, reversal_reason
          FROM bet_cash_outs WHERE bet_id = :id ORDER BY seq"""), {"id": bet_id}).mappings()]
    return bet


def get_many(conn: Connection, bet_ids: Sequence[str]) -> list[dict[str, Any]]:
    """`get` of many bets (a page of GET /v1/bets) in four statements, in the order given;
    unknown ids are left out. Keep its parts in step with `get`."""
    ids = list(bet_ids)
    rows = {row["id"]: dict(row) for row in conn.execute(text(
        "SELECT * FROM bets WHERE id = ANY(:ids)"), {"ids": ids}).mappings()}
    for bet in rows.values():
        bet.pop("request_hash", None)
        bet["legs"], bet["settlements"], bet["cash_out_history"] = [], [], []
    for part, sql in (
            ("legs", """SELECT bet_id, leg_no, market_id, selection_id, odds, odds_format,
                               price_num::text || '/' || price_den::text AS price
                          FROM bet_legs WHERE bet_id = ANY(:ids) ORDER BY bet_id, leg_no"""),
            ("settlements", """SELECT bet_id, kind, version, market_id, payout, delta, applied,
                                      outcome, ledger_key, shortfall, results, created_at
                                 FROM bet_settlements WHERE bet_id = ANY(:ids)
                                ORDER BY bet_id, created_at, version"""),
            ("cash_out_history", """SELECT bet_id, seq, quote_id, quote_expires_at, stake, value,
                                           ledger_key, state, created_at, reversed_at,
                                           reversal_reason
                                      FROM bet_cash_outs WHERE bet_id = ANY(:ids)
                                     ORDER BY bet_id, seq""")):
        for row in conn.execute(text(sql), {"ids": ids}).mappings():
            entry = dict(row)
            rows[entry.pop("bet_id")][part].append(entry)
    return [rows[bet_id] for bet_id in ids if bet_id in rows]


# --- cash-outs ------------------------------------------------------------------------------

def cash_out_by_quote(conn: Connection, bet_id: str, quote_id: str) -> dict[str, Any] | None:
    """The bet's cash-out made with this quote, or None."""
    row = conn.execute(text("""SELECT seq, quote_id, request_hash, state FROM bet_cash_outs
                                WHERE bet_id = :b AND quote_id = :q"""),
                       {"b": bet_id, "q": quote_id}).mappings().one_or_none()
    return dict(row) if row is not None else None


def last_cash_out(conn: Connection, bet_id: str) -> dict[str, Any] | None:
    """The bet's latest cash-out that is not reversed (what a reversal undoes), or None."""
    row = conn.execute(text("""SELECT seq, stake, stake_bonus, value, value_bonus, ledger_key
                                 FROM bet_cash_outs WHERE bet_id = :b AND state = 'done'
                                ORDER BY seq DESC LIMIT 1"""), {"b": bet_id}).mappings().first()
    return dict(row) if row is not None else None


def insert_cash_out(conn: Connection, *, bet_id: str, seq: int, quote_id: str,
                    quote_expires_at: Any, stake: int, stake_bonus: int, value: int,
                    value_bonus: int, ledger_key: str, request_hash: bytes,
                    created_by: str) -> None:
    """The cash-out row, and the bet's cashed-out totals (its status `cashed_out` when the
    whole stake is out)."""
    conn.execute(text("""
        INSERT INTO bet_cash_outs (bet_id, seq, quote_id, quote_expires_at, stake, stake_bonus,
                                   value, value_bonus, ledger_key, request_hash, created_by)
        VALUES (:b, :seq, :q, :exp, :stake, :sb, :value, :vb, :key, :hash, :by)"""),
        {"b": bet_id, "seq": seq, "q": quote_id, "exp": quote_expires_at, "stake": stake,
         "sb": stake_bonus, "value": value, "vb": value_bonus, "key": ledger_key,
         "hash": request_hash, "by": created_by})
    _cashed_out_totals(conn, bet_id)


def mark_cash_out_reversed(conn: Connection, bet_id: str, seq: int, by: str,
                           reason: str) -> None:
    """Cash-out `seq` reversed: the bet's cashed-out totals without it (open again)."""
    conn.execute(text("""UPDATE bet_cash_outs
                            SET state = 'reversed', reversed_by = :by, reversed_at = now(),
                                reversal_reason = :reason
                          WHERE bet_id = :b AND seq = :seq"""),
                 {"b": bet_id, "seq": seq, "by": by, "reason": reason})
    _cashed_out_totals(conn, bet_id)


def _cashed_out_totals(conn: Connection, bet_id: str) -> None:
    conn.execute(text("""
        UPDATE bets b
           SET cashed_out_stake = c.stake, cashed_out_bonus = c.stake_bonus,
               cashed_out_value = c.value, cash_outs = c.n, updated_at = now(),
               status = CASE WHEN c.stake = b.stake THEN 'cashed_out'
                             WHEN b.status = 'cashed_out' THEN 'open' ELSE b.status END,
               settled_at = CASE WHEN c.stake = b.stake THEN now()
                                 WHEN b.status = 'cashed_out' THEN NULL
                                 ELSE b.settled_at END
          FROM (SELECT coalesce(sum(stake) FILTER (WHERE state = 'done'), 0) AS stake,
                       coalesce(sum(stake_bonus) FILTER (WHERE state = 'done'), 0) AS stake_bonus,
                       coalesce(sum(value) FILTER (WHERE state = 'done'), 0) AS value,
                       count(*) AS n
                  FROM bet_cash_outs WHERE bet_id = :b) c
         WHERE b.id = :b"""), {"b": bet_id})
