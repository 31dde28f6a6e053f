"""Market results and settlement state as SQL: reads and writes of market_results,
market_settlements, bet_settlements and the settlement columns of bets. Nothing else.

    lock_market / lock_markets_shared   the per-market advisory lock (results vs bets)
    market_betting, closed_markets, close_betting, reopen_betting   whether a market takes bets
    result_status, latest_version, first_settled_at, insert_result, supersede_current,
    mark_rolled_back, current_results   market results
    run_row, upsert_run, finish_run     the market_settlements row of a settlement run
    round_end                           where the next round of bets (after the cursor) ends
    bets_in_range                       the bets of one batch, locked, in id order
    unchanged_results, page_in_range, bets_by_id   a correction's page: the bets it cannot
                                        change told apart unlocked, the others locked
    bet_for_update                      one bet as settlement reads it, locked (cash-out)
    insert_records, update_bets         a batch's history rows and bet updates, set-based
    mark_wagered                        bets counted towards their bonus's wagering
    summary                             what GET /v1/markets/{id}/settlement shows
    cancellation, insert_cancellation, cancellation_done, mark_cancellation_rolled_back,
    bets_for_cancellation, bets_of_cancellation     market cancellations (BetCancel)

The rules (versions, windows, what each bet's step is) live in commands/settlement.py and
domain/settlement/plan.py. Must never: write audit or outbox records, post to the ledger, or
decide a business rule.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from itertools import chain
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from sqlalchemy import Connection, text

from domain.settlement import SelectionResult
from domain.settlement.plan import (
    Account,
    BetStatus,
    BetUpdate,
    Funding,
    SettlementRecord,
    StoredBet,
)
from store.pagination import Listing
from workflows.contracts.settlement import MarketState, ResultStatus

_LOCK_KEY = "hashtext('market:' || :m)"

# GET /v1/markets pages (store/pagination.py), newest first, on markets_list* (migration 0015).
MARKET_COLUMNS = "market_id, betting, closed_at, reopened_at, created_at, updated_at"
MARKETS = Listing("markets", MARKET_COLUMNS, id_column="market_id")
# The markets a partner's players have bets on (a partner's markets list).
PARTNER_HAS_BETS = ("EXISTS (SELECT 1 FROM bet_legs l JOIN bets b ON b.id = l.bet_id "
                    "WHERE l.market_id = markets.market_id AND b.partner_id = :c_partner)")


# --- the per-market lock ----------------------------------------------------------------------

def lock_market(conn: Connection, market_id: str) -> None:
    """The market's advisory lock, exclusive, to the end of the transaction (results,
    rollbacks and reopening of one market are decided one at a time)."""
    conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"), {"m": market_id})


def lock_markets_shared(conn: Connection, market_ids: Iterable[str]) -> None:
    """The markets' advisory locks, shared, in sorted order, to the end of the transaction."""
    for market_id in sorted(set(market_ids)):
        conn.execute(text(f"SELECT pg_advisory_xact_lock_shared({_LOCK_KEY})"), {"m": market_id})


# --- betting on a market ----------------------------------------------------------------------

def market_betting(conn: Connection, market_id: str) -> str | None:
    """'open' / 'closed' for a market that has had a result; None for one that never had."""
    return conn.execute(text("SELECT betting FROM markets WHERE market_id = :m"),
                        {"m": market_id}).scalar()


def closed_markets(conn: Connection, market_ids: Iterable[str]) -> list[str]:
    """The markets among these that are closed for betting, sorted."""
    return list(conn.execute(text("""SELECT market_id FROM markets
                                      WHERE market_id = ANY(:m) AND betting = 'closed'
                                      ORDER BY market_id"""),
                             {"m": sorted(set(market_ids))}).scalars())


def close_betting(conn: Connection, market_id: str) -> None:
    conn.execute(text("""INSERT INTO markets (market_id, betting, closed_at)
                         VALUES (:m, 'closed', now())
                         ON CONFLICT (market_id) DO UPDATE
                            SET betting = 'closed', closed_at = now(), updated_at = now()"""),
                 {"m": market_id})


def reopen_betting(conn: Connection, market_id: str, reopened_by: str) -> None:
    conn.execute(text("""UPDATE markets SET betting = 'open', reopened_at = now(),
                                            reopened_by = :by, updated_at = now()
                          WHERE market_id = :m"""), {"m": market_id, "by": reopened_by})


# --- results ----------------------------------------------------------------------------------

def result_row(conn: Connection, market_id: str, version: int) -> Any:
    """(selections, status) of one result version, or None."""
    return conn.execute(text("""SELECT selections, status FROM market_results
                                 WHERE market_id = :m AND version = :v"""),
                        {"m": market_id, "v": version}).one_or_none()


def result_status(conn: Connection, market_id: str, version: int) -> ResultStatus | None:
    status = conn.execute(text("""SELECT status FROM market_results
                                   WHERE market_id = :m AND version = :v"""),
                          {"m": market_id, "v": version}).scalar()
    return ResultStatus(status) if status is not None else None


def latest_version(conn: Connection, market_id: str) -> int | None:
    return conn.execute(text("SELECT max(version) FROM market_results WHERE market_id = :m"),
                        {"m": market_id}).scalar()


def markets_with_current_result(conn: Connection, market_ids: Iterable[str]) -> list[str]:
    return list(conn.execute(text("""SELECT market_id FROM market_results
                                      WHERE market_id = ANY(:m) AND status = 'current'
                                      ORDER BY market_id"""),
                             {"m": sorted(set(market_ids))}).scalars())


def first_settled_at(conn: Connection, market_id: str) -> datetime | None:
    return conn.execute(text("""SELECT first_settled_at FROM market_settlements
                                 WHERE market_id = :m"""), {"m": market_id}).scalar()


def supersede_current(conn: Connection, market_id: str) -> int | None:
    """Mark the current result superseded; returns its version (None: there was none)."""
    return conn.execute(text("""UPDATE market_results SET status = 'superseded'
                                 WHERE market_id = :m AND status = 'current'
                                RETURNING version"""), {"m": market_id}).scalar()


def insert_result(conn: Connection, market_id: str, version: int, selections: dict[str, Any],
                  received_by: str) -> None:
    conn.execute(text("""INSERT INTO market_results (market_id, version, selections, received_by)
                         VALUES (:m, :v, CAST(:s AS jsonb), :actor)"""),
                 {"m": market_id, "v": version, "s": json.dumps(selections),
                  "actor": received_by})


def mark_rolled_back(conn: Connection, market_id: str, version: int) -> None:
    conn.execute(text("""UPDATE market_results SET status = 'rolled_back'
                          WHERE market_id = :m AND version = :v"""),
                 {"m": market_id, "v": version})


def current_results(conn: Connection, market_ids: Iterable[str],
                    ) -> tuple[dict[tuple[str, str], SelectionResult], dict[str, int]]:
    """The current results of the markets: ((market, selection) -> result, market -> version)."""
    rows = conn.execute(text("""SELECT market_id, version, selections FROM market_results
                                 WHERE market_id = ANY(:m) AND status = 'current'"""),
                        {"m": sorted(set(market_ids))}).all()
    results: dict[tuple[str, str], SelectionResult] = {}
    versions: dict[str, int] = {}
    for row in rows:
        versions[row.market_id] = row.version
        for sid, result in row.selections.items():
            results[(row.market_id, sid)] = SelectionResult.from_json(result)
    return results, versions


# --- the run ----------------------------------------------------------------------------------

def run_row(conn: Connection, market_id: str, *, for_update: bool = False) -> Any:
    """(version, state, workflow_id) of the market's settlement row, or None."""
    lock = " FOR UPDATE" if for_update else ""
    return conn.execute(text(f"""SELECT version, state, workflow_id FROM market_settlements
                                  WHERE market_id = :m{lock}"""), {"m": market_id}).one_or_none()


def upsert_run(conn: Connection, market_id: str, version: int, state: MarketState,
               workflow_id: str) -> bool:
    """Make this run the market's run, unless a newer version's run already is; True if the
    row was written."""
    written = conn.execute(text("""
        INSERT INTO market_settlements (market_id, version, state, workflow_id)
        VALUES (:m, :v, :s, :wf)
        ON CONFLICT (market_id) DO UPDATE
           SET version = excluded.version, state = excluded.state,
               workflow_id = excluded.workflow_id, bets_processed = 0, bets_posted = 0,
               updated_at = now()
         WHERE market_settlements.version <= excluded.version
        RETURNING market_id"""),
        {"m": market_id, "v": version, "s": str(state), "wf": workflow_id}).scalar()
    return written is not None


def finish_run(conn: Connection, market_id: str, workflow_id: str, state: MarketState,
               processed: int, posted: int) -> bool:
    """Mark the run done if it is still the market's run; True if it was."""
    updated = conn.execute(text("""
        UPDATE market_settlements
           SET state = :s, bets_processed = :n, bets_posted = :p, updated_at = now(),
               first_settled_at = CASE WHEN :s = 'settled' THEN coalesce(first_settled_at, now())
                                       ELSE first_settled_at END
         WHERE market_id = :m AND workflow_id = :wf
        RETURNING market_id"""),
        {"s": str(state), "n": processed, "p": posted, "m": market_id,
         "wf": workflow_id}).scalar()
    return updated is not None


def round_end(conn: Connection, market_id: str, after: str, size: int) -> str | None:
    """The bet id that closes the next round: the `size`-th bet on the market after `after`
    (or the last one, when fewer remain); None when no bet is left. One indexed scan."""
    return conn.execute(text("""
        SELECT max(bet_id) FROM (SELECT bet_id FROM bet_legs
                                  WHERE market_id = :m AND bet_id > :after
                                  ORDER BY bet_id LIMIT :size) b"""),
        {"m": market_id, "after": after, "size": size}).scalar()


# --- one batch --------------------------------------------------------------------------------

# The bets of a round (lo < id <= hi) on the market in partition `part` of `parts` that a run
# settles: bets_in_range and page_in_range read the same ones.
_IN_ROUND_PART = """b.id IN (SELECT bet_id FROM bet_legs
                         WHERE market_id = :m AND bet_id > :lo AND bet_id <= :hi)
           AND b.id > :lo AND b.id <= :hi
           AND b.status NOT IN ('rejected', 'cashed_out') AND b.needs_review IS NULL
           AND (:parts = 1 OR mod(abs(hashtext(b.player_id)::bigint), :parts) = :part)"""


def bets_in_range(conn: Connection, market_id: str, lo: str, hi: str, part: int,
                  parts: int, *, limit: int | None = None) -> list[StoredBet]:
    """The bets on the market with lo < id <= hi whose player falls in partition `part` of
    `parts`, locked (FOR UPDATE) in id order; rejected bets and bets flagged for review are
    left out. `limit`: the first so many (a page; the next page starts after the last id).
    The range is also stated on bets.id (the same bets): the bets are then read by a bets_pkey
    range scan over the round only; without it a part's player filter (estimated at 1/200)
    led the planner to a sequential scan of the whole bets table per page, so reading a round
    grew with the table (quadratic over a large market)."""
    rows = conn.execute(text(f"""
        SELECT {BET_COLUMNS}
          FROM bets b
         WHERE {_IN_ROUND_PART}
         ORDER BY b.id
         LIMIT :limit
           FOR UPDATE OF b"""),
        {"m": market_id, "lo": lo, "hi": hi, "part": part, "parts": parts,
         "limit": limit}).all()
    legs_seen: dict[tuple[str, ...], tuple[Any, ...]] = {}
    return [stored_bet(row, legs_seen) for row in rows]


def unchanged_results(conn: Connection, market_id: str) -> list[str]:
    """`<version>:<selection>` for every version of the market (superseded or current) whose
    result of that selection is the same as the current one's: a single bet on the selection
    that was settled at that version, and paid what it was worth, gets nothing from a run of
    the current results. Empty when the market has no current result, no earlier one (a first
    settlement: every bet is read and locked in one statement, as before) or has had a result
    rolled back (its rollback runs move settled bets of any version)."""
    return list(conn.execute(text("""
        SELECT o.version::text || ':' || s.key
          FROM market_results c
          CROSS JOIN LATERAL jsonb_each(c.selections) s
          JOIN market_results o ON o.market_id = c.market_id AND o.version <= c.version
                               AND o.selections -> s.key = s.value
         WHERE c.market_id = :m AND c.status = 'current'
           AND EXISTS (SELECT 1 FROM market_results e
                        WHERE e.market_id = :m AND e.version < c.version)
           AND NOT EXISTS (SELECT 1 FROM market_results r
                            WHERE r.market_id = :m AND r.status = 'rolled_back')
         ORDER BY 1"""), {"m": market_id}).scalars())


def page_in_range(conn: Connection, market_id: str, lo: str, hi: str, part: int, parts: int,
                  unchanged: list[str], *, limit: int) -> list[tuple[str, bool]]:
    """The page of bets bets_in_range would read, NOT locked: (id, whether it is a single,
    cash-only bet settled at a version whose result of its selection is the current one's
    (`unchanged_results`), paid what it was worth; a run of the current results changes
    nothing on it)."""
    return [(row[0], bool(row[1])) for row in conn.execute(text(f"""
        SELECT b.id,
               b.status = 'settled' AND b.payout = b.paid AND b.funding = 'cash'
               AND b.bonus_id IS NULL AND b.stake_bonus = 0 AND b.paid_bonus = 0
               AND b.returned_free_bet = 0
               AND (SELECT count(*) = 1
                           AND bool_and(b.version::text || ':' || l.selection_id
                                        = ANY(CAST(:same AS text[])))
                      FROM bet_legs l WHERE l.bet_id = b.id)
          FROM bets b
         WHERE {_IN_ROUND_PART}
         ORDER BY b.id
         LIMIT :limit"""),
        {"m": market_id, "lo": lo, "hi": hi, "part": part, "parts": parts,
         "same": unchanged, "limit": limit})]


def bets_by_id(conn: Connection, bet_ids: list[str]) -> list[StoredBet]:
    """These bets as bets_in_range reads them, locked (FOR UPDATE) in id order; rejected,
    cashed-out and flagged bets left out (as they are now, once locked)."""
    if not bet_ids:
        return []
    rows = conn.execute(text(f"""
        SELECT {BET_COLUMNS}
          FROM bets b
         WHERE b.id = ANY(:ids)
           AND b.status NOT IN ('rejected', 'cashed_out') AND b.needs_review IS NULL
         ORDER BY b.id
           FOR UPDATE OF b"""), {"ids": bet_ids}).all()
    legs_seen: dict[tuple[str, ...], tuple[Any, ...]] = {}
    return [stored_bet(row, legs_seen) for row in rows]


# A bet as settlement reads it (store rows -> StoredBet); `stake` is what is still in play.
# A bet's partner is its player's (commands/bets.py takes it from the player at intake).
# Its legs in leg order, as a 2-D array (NULL: no legs): an ARRAY(subquery) reads them in
# bet_legs_pkey order, where array_agg(... ORDER BY leg_no) sorted each bet's legs again
# (the same arrays; ~0.9 us less PostgreSQL CPU per bet read).
BET_COLUMNS = """b.id, b.player_id, b.partner_id, b.currency, b.stake, b.bet_type,
               b.place_fraction, b.place_count, b.status, b.paid, b.payout, b.version,
               b.settlement_key, b.rollbacks, b.funding, b.stake_bonus, b.paid_bonus,
               b.returned_free_bet, b.cashed_out_stake, b.cashed_out_bonus, b.bonus_id,
               b.bonus_wagered, b.cancellation_id,
               nullif(ARRAY(SELECT ARRAY[l.market_id, l.selection_id, l.price_num::text,
                                         l.price_den::text]
                              FROM bet_legs l WHERE l.bet_id = b.id ORDER BY l.leg_no),
                      '{}') AS legs"""


_STATUS = {str(status): status for status in BetStatus}
_FUNDING = {str(funding): funding for funding in Funding}


def _legs(legs: list[list[str]], seen: dict[tuple[str, ...], tuple[Any, ...]]) -> tuple[Any, ...]:
    """A bet's legs as StoredLeg tuples; bets of a page with the same legs share one tuple."""
    key = tuple(chain.from_iterable(legs))
    shared = seen.get(key)
    if shared is None:
        shared = seen[key] = tuple((m, s, int(num), int(den)) for m, s, num, den in legs)
    return shared


_BET_FIELDS = 24    # the columns of BET_COLUMNS, in order (a query may select more after them)


def stored_bet(row: Any, legs_seen: dict[tuple[str, ...], tuple[Any, ...]] | None = None,
               ) -> StoredBet:
    """A row that starts with BET_COLUMNS as a StoredBet. Read by position (a page is
    thousands of rows: a Row's attribute lookups by name cost more than the rest)."""
    (bet_id, player_id, partner_id, currency, stake, bet_type, place_fraction, place_count,
     status, paid, payout, version, settlement_key, rollbacks, funding, stake_bonus, paid_bonus,
     returned_free_bet, cashed_out_stake, cashed_out_bonus, bonus_id, bonus_wagered,
     cancellation_id, legs) = row[:_BET_FIELDS]
    # By position, in the fields' order: a class called with keywords gets them as a dict
    # (built, then unpacked for __init__), ~8,000 instructions for a StoredBet's 23.
    return StoredBet(
        bet_id, player_id, partner_id, currency.strip(), int(stake) - int(cashed_out_stake),
        bet_type, place_fraction, place_count, _STATUS[status], int(paid),
        None if payout is None else int(payout), version, settlement_key,
        _legs(legs, {} if legs_seen is None else legs_seen), rollbacks, _FUNDING[funding],
        int(stake_bonus) - int(cashed_out_bonus), int(paid_bonus), int(returned_free_bet),
        Account.PLAYER_BONUS, bonus_id, bonus_wagered, cancellation_id)


def bet_for_update(conn: Connection, bet_id: str) -> StoredBet | None:
    """One bet (internal id) as settlement reads it, locked (FOR UPDATE); None if unknown."""
    row = conn.execute(text(f"""
        SELECT {BET_COLUMNS}
          FROM bets b JOIN players p ON p.id = b.player_id
         WHERE b.id = :id
           FOR UPDATE OF b"""), {"id": bet_id}).one_or_none()
    return stored_bet(row) if row is not None else None


def bets_for_cancellation(conn: Connection, market_id: str, placed_from: datetime | None,
                          placed_until: datetime | None) -> list[StoredBet]:
    """The open and settled bets on the market placed within [from, until) (an open end: no
    bound), locked (FOR UPDATE) in id order."""
    rows = conn.execute(text(f"""
        SELECT {BET_COLUMNS}
          FROM bets b JOIN players p ON p.id = b.player_id
         WHERE b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
           AND b.status IN ('open', 'settled')
           AND (CAST(:from AS timestamptz) IS NULL OR b.placed_at >= :from)
           AND (CAST(:until AS timestamptz) IS NULL OR b.placed_at < :until)
         ORDER BY b.id
           FOR UPDATE OF b"""), {"m": market_id, "from": placed_from, "until": placed_until}).all()
    return [stored_bet(row) for row in rows]


def bets_of_cancellation(conn: Connection, cancellation_id: int) -> list[StoredBet]:
    """The bets cancellation `cancellation_id` refunded and that are still cancelled by it,
    locked (FOR UPDATE) in id order."""
    rows = conn.execute(text(f"""
        SELECT {BET_COLUMNS}
          FROM bets b JOIN players p ON p.id = b.player_id
         WHERE b.cancellation_id = :c AND b.status = 'cancelled'
         ORDER BY b.id
           FOR UPDATE OF b"""), {"c": cancellation_id}).all()
    return [stored_bet(row) for row in rows]


def mark_wagered(conn: Connection, bet_ids: list[str], counted: bool = True) -> None:
    """These bets have counted towards their bonus's wagering requirement (or, `counted`
    False, no longer do)."""
    if bet_ids:
        conn.execute(text("UPDATE bets SET bonus_wagered = :c WHERE id = ANY(:ids)"),
                     {"ids": bet_ids, "c": counted})


# A batch's rows (insert_records, update_bets) are written as JSON text a value at a time:
# the text json.dumps gave for the list of dicts (tests/store/test_settlements.py compares),
# without a dict per row and the encoder's walk over them.
_SETTLED = (BetStatus.SETTLED, BetStatus.CANCELLED)
_JSON_CONSTANTS = {None: "null", True: "true", False: "false"}


# The fields a SettlementRecord or a BetUpdate always has as a str or an int are written by
# the encoder's own functions, called directly (_json is a Python call per value: ~1,500
# instructions, 22 values per bet); a StrEnum member (kind, status) is written as its string.
_int = int.__repr__


def _json(value: Any) -> str:
    """`json.dumps(value)` of one value of a row."""
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if kind is int:
        return int.__repr__(value)
    if value is None or kind is bool:
        return _JSON_CONSTANTS[value]
    return json.dumps(value)


def insert_records(conn: Connection, market_id: str, records: list[SettlementRecord],
                   postings: dict[str, tuple[int | None, int]]) -> None:
    """A batch's settlement history rows, one statement; `postings` maps a ledger key to
    (transaction id, shortfall) of its posting. `created_at` is the clock's, not the
    transaction's start: a bet's history reads in the order its rows were written, also when
    one transaction writes two (a cancellation rolled back, then the bet settled)."""
    if not records:
        return
    rows = []
    results: dict[int, str] = {}    # id of a record's results -> its JSON (a page shares few)
    for r in records:   # by hand: dataclasses.asdict deep-copies, and batches are large
        transaction_id, shortfall = postings.get(r.ledger_key or "", (None, 0))
        used = results.get(id(r.results))
        if used is None:
            used = results[id(r.results)] = json.dumps(r.results)
        rows.append(f'{{"bet_id": {_json_str(r.bet_id)}, "kind": {_json_str(r.kind)}, '
                    f'"version": {_int(r.version)}, "payout": {_int(r.payout)}, '
                    f'"delta": {_int(r.delta)}, "applied": {_json(r.applied)}, '
                    f'"outcome": {_json_str(r.outcome)}, '
                    f'"ledger_key": {_json(r.ledger_key)}, "results": {used}, '
                    f'"transaction_id": {_json(transaction_id)}, '
                    f'"shortfall": {_json(shortfall)}}}')
    conn.execute(text("""
        INSERT INTO bet_settlements (bet_id, kind, version, market_id, payout, delta, applied,
                                     outcome, ledger_key, transaction_id, shortfall, results,
                                     created_at)
        SELECT r.bet_id, r.kind, r.version, :m, r.payout, r.delta, r.applied, r.outcome,
               r.ledger_key, r.transaction_id, r.shortfall, r.results, clock_timestamp()
          FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(bet_id text, kind text,
               version bigint, payout bigint, delta bigint, applied boolean, outcome text,
               ledger_key text, transaction_id bigint, shortfall bigint, results jsonb)
        ON CONFLICT DO NOTHING"""), {"m": market_id, "rows": "[" + ", ".join(rows) + "]"})


def update_bets(conn: Connection, updates: list[BetUpdate]) -> None:
    """A batch's bet updates, one statement."""
    if not updates:
        return
    rows = [f'{{"bet_id": {_json_str(u.bet_id)}, "status": {_json_str(u.status)}, '
            f'"paid": {_int(u.paid)}, "payout": {_json(u.payout)}, '
            f'"version": {_json(u.version)}, "settlement_key": {_json(u.settlement_key)}, '
            f'"rollbacks": {_int(u.rollbacks)}, "needs_review": {_json(u.needs_review)}, '
            f'"settled": {"true" if u.status in _SETTLED else "false"}, '
            f'"paid_bonus": {_int(u.paid_bonus)}, '
            f'"returned_free_bet": {_int(u.returned_free_bet)}, '
            f'"cancellation_id": {_json(u.cancellation_id)}}}'
            for u in updates]
    conn.execute(text("""
        UPDATE bets b
           SET status = u.status, paid = u.paid, payout = u.payout, version = u.version,
               settlement_key = u.settlement_key, rollbacks = u.rollbacks,
               needs_review = u.needs_review, paid_bonus = u.paid_bonus,
               returned_free_bet = u.returned_free_bet, cancellation_id = u.cancellation_id,
               updated_at = now(),
               settled_at = CASE WHEN u.settled THEN coalesce(b.settled_at, now()) END
          FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(bet_id text, status text,
               paid bigint, payout bigint, version bigint, settlement_key text,
               rollbacks int, needs_review text, settled boolean, paid_bonus bigint,
               returned_free_bet bigint, cancellation_id bigint)
         WHERE b.id = u.bet_id"""), {"rows": "[" + ", ".join(rows) + "]"})


# --- reading ----------------------------------------------------------------------------------

def summary(conn: Connection, market_id: str, *,
            partner_id: str | None = None) -> dict[str, Any]:
    """Version, state, counts and totals of a market's settlement; with `partner_id`, the
    counts and totals of that partner's players' bets only."""
    state = conn.execute(text("""SELECT version, state, workflow_id, bets_processed, bets_posted,
                                        first_settled_at, updated_at
                                   FROM market_settlements WHERE market_id = :m"""),
                         {"m": market_id}).mappings().one_or_none()
    counts = conn.execute(text("""
        SELECT count(*) AS total,
               count(*) FILTER (WHERE b.status = 'open') AS open,
               count(*) FILTER (WHERE b.status = 'settled') AS settled,
               count(*) FILTER (WHERE b.status = 'cashed_out') AS cashed_out,
               count(*) FILTER (WHERE b.status = 'cancelled') AS cancelled,
               coalesce(sum(b.stake) FILTER (WHERE b.status = 'settled'), 0) AS stake,
               coalesce(sum(b.paid) FILTER (WHERE b.status = 'settled'), 0) AS paid,
               count(*) FILTER (WHERE b.needs_review IS NOT NULL) AS needs_review,
               b.currency
          FROM bets b JOIN players p ON p.id = b.player_id
         WHERE b.status <> 'rejected'
           AND b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
           AND (CAST(:partner AS text) IS NULL OR p.partner_id = :partner)
         GROUP BY b.currency"""), {"m": market_id, "partner": partner_id}).mappings().all()
    versions = conn.execute(text("""SELECT version, status, received_at FROM market_results
                                     WHERE market_id = :m ORDER BY version"""),
                            {"m": market_id}).mappings().all()
    bets = {"total": 0, "open": 0, "settled": 0}
    final = {"cashed_out": 0, "cancelled": 0}
    needs_review = 0
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for c in counts:
        for k in bets:
            bets[k] += c[k]
        for k in final:
            final[k] += c[k]
        needs_review += c["needs_review"]
        totals[c["currency"].strip()] = {"stake": int(c["stake"]), "paid": int(c["paid"]),
                                         "house": int(c["stake"]) - int(c["paid"])}
    if state:
        shown_state = state["state"]
    else:
        shown_state = MarketState.PENDING if versions else MarketState.OPEN
    return {
        "market_id": market_id,
        "version": state["version"] if state else None,
        "state": str(shown_state),
        "workflow_id": state["workflow_id"] if state else None,
        "run": ({"bets_processed": state["bets_processed"], "bets_posted": state["bets_posted"]}
                if state else None),
        "first_settled_at": state["first_settled_at"] if state else None,
        "bets": bets,
        "bets_needing_review": needs_review,
        "bets_cashed_out": final["cashed_out"],
        "bets_cancelled": final["cancelled"],
        "totals": dict(totals),
        "betting": market_betting(conn, market_id) or "open",
        "result_versions": [dict(v) for v in versions],
    }


# --- market cancellations (BetCancel / RollbackBetCancel) -----------------------------------

_CANCELLATION = """id, market_id, external_id, reason_code, reason, placed_from, placed_until,
                   status, bets_cancelled, request_hash, created_by, created_at,
                   rolled_back_by, rolled_back_at"""


def cancellation(conn: Connection, market_id: str, external_id: str, *,
                 for_update: bool = False) -> dict[str, Any] | None:
    """The market's cancellation with this id (the feed's), or None."""
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(text(f"""SELECT {_CANCELLATION} FROM market_cancellations
                                 WHERE market_id = :m AND external_id = :x{lock}"""),
                       {"m": market_id, "x": external_id}).mappings().one_or_none()
    return dict(row) if row is not None else None


def insert_cancellation(conn: Connection, *, market_id: str, external_id: str,
                        reason_code: str, reason: str | None, placed_from: datetime | None,
                        placed_until: datetime | None, request_hash: bytes,
                        created_by: str) -> int:
    """A new cancellation; returns its id (part of the refunds' ledger keys)."""
    return conn.execute(text("""
        INSERT INTO market_cancellations (market_id, external_id, reason_code, reason,
                                          placed_from, placed_until, request_hash, created_by)
        VALUES (:m, :x, :code, :reason, :from, :until, :hash, :by)
        RETURNING id"""),
        {"m": market_id, "x": external_id, "code": reason_code, "reason": reason,
         "from": placed_from, "until": placed_until, "hash": request_hash,
         "by": created_by}).scalar_one()


def cancellation_done(conn: Connection, cancellation_id: int, bets_cancelled: int) -> None:
    conn.execute(text("UPDATE market_cancellations SET bets_cancelled = :n WHERE id = :c"),
                 {"n": bets_cancelled, "c": cancellation_id})


def mark_cancellation_rolled_back(conn: Connection, cancellation_id: int, by: str) -> None:
    conn.execute(text("""UPDATE market_cancellations
                            SET status = 'rolled_back', rolled_back_by = :by,
                                rolled_back_at = now()
                          WHERE id = :c"""), {"c": cancellation_id, "by": by})
