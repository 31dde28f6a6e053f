"""Market results and settling a market's bets, one batch per database transaction.

    record_result(conn, ...)   store a result version (replay / conflict / stale / window)
    record_rollback(conn, ...) mark the current result rolled back (bets will reopen)
    begin / finish             the market_settlements row of a settlement run
    plan_round(conn, ...)      where the next round of bets (after the cursor) ends
    settle_range(conn, ...)    settle / resettle / roll back one part of a round, set-based
    summary(conn, market_id)   what GET /v1/markets/{id}/settlement shows

Rounds walk the market's bets in bet id order (the cursor); each round is split by player into
parts settled concurrently, one database transaction each.

A bet is always settled against the *current* results of all its markets. Its settlement
version is the sum of those markets' result versions: for a single it is the market's result
version, for a parlay it grows with every correction to any leg, so the ledger key
`bet:<id>:v<version>` names exactly one state of the world and is never reused. The batch
locks its bets (FOR UPDATE, in id order) and posts only what differs from what was paid, so a
batch run twice (a worker killed after commit, a retry, two workflows of the same market)
posts nothing the second time, and the ledger keys make the posting itself idempotent too.

Settlement legs of one bet (zero-sum):      bets_in_play -stake, player_cash +payout,
                                            house_revenue +(stake - payout)
Resettlement (delta = new payout - paid):   player_cash +delta (a negative delta overflows
                                            into player_debt), house_revenue -delta
Rollback (bet open again):                  the exact reverse of what was posted
This module never decides payouts (domain.settlement does) and never writes ledger tables.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, text

import audit
import ledger
import outbox
from domain.settlement import Bet, BetType, Leg, Pending, PlaceTerms, SelectionResult, settle
from domain.settlement.results import InvalidResult
from ledger import AccountRef, Transfer
from settlepay.config import Settings

SETTLE, ROLLBACK = "settle", "rollback"


class ResultRefused(Exception):
    """A result (or rollback) that must not be applied; `code` names why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


# --- results --------------------------------------------------------------------------------

def parse_selections(selections: dict[str, Any]) -> dict[str, SelectionResult]:
    if not selections:
        raise ResultRefused("invalid_result", "a result names at least one selection")
    try:
        return {str(sid): SelectionResult.from_json(dict(r)) for sid, r in selections.items()}
    except (InvalidResult, KeyError, ValueError, TypeError) as error:
        raise ResultRefused("invalid_result", f"invalid selection result: {error}") from error


def _window_check(conn: Connection, settings: Settings, market_id: str, now: datetime) -> None:
    first = conn.execute(text("SELECT first_settled_at FROM market_settlements WHERE market_id = :m"),
                         {"m": market_id}).scalar()
    if first is not None and now > first + timedelta(hours=settings.correction_window_hours):
        raise ResultRefused("correction_window_closed",
                            f"market {market_id} was first settled at {first.isoformat()}; corrections "
                            f"are accepted for {settings.correction_window_hours} hours")


def record_result(conn: Connection, settings: Settings, market_id: str, version: int,
                  selections: dict[str, Any], *, actor: str, now: datetime | None = None) -> tuple[dict, bool]:
    """Store result `version` for the market; returns (result row, replayed).

    Same version with the same selections replays; with others it is a conflict; a version not
    above every earlier one is stale; a correction after the window is refused.
    """
    now = now or datetime.now(UTC)
    parsed = parse_selections(selections)
    canonical = {sid: r.to_json() for sid, r in sorted(parsed.items())}
    # One writer per market at a time: result versions are decided in order.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('market:' || :m))"), {"m": market_id})
    same = conn.execute(text("SELECT selections, status FROM market_results WHERE market_id = :m AND version = :v"),
                        {"m": market_id, "v": version}).one_or_none()
    if same is not None:
        if same.selections != canonical:
            raise ResultRefused("result_version_conflict",
                                f"version {version} of market {market_id} was received with other results")
        return {"market_id": market_id, "version": version, "selections": canonical, "status": same.status}, True
    latest = conn.execute(text("SELECT max(version) FROM market_results WHERE market_id = :m"),
                          {"m": market_id}).scalar()
    if latest is not None and version <= latest:
        raise ResultRefused("result_version_stale",
                            f"market {market_id} already has result version {latest}; send a higher one")
    _window_check(conn, settings, market_id, now)
    previous = conn.execute(text("""UPDATE market_results SET status = 'superseded'
                                     WHERE market_id = :m AND status = 'current' RETURNING version"""),
                            {"m": market_id}).scalar()
    conn.execute(text("""INSERT INTO market_results (market_id, version, selections, received_by)
                         VALUES (:m, :v, CAST(:s AS jsonb), :actor)"""),
                 {"m": market_id, "v": version, "s": json.dumps(canonical), "actor": actor})
    audit.record(conn, actor=actor, action="market.result_received", subject_type="market",
                 subject_id=market_id, before={"version": previous} if previous else None,
                 after={"version": version, "selections": canonical})
    outbox.emit(conn, event_type="market.result_received", aggregate_type="market", aggregate_id=market_id,
                payload={"market_id": market_id, "version": version, "corrects": previous})
    return {"market_id": market_id, "version": version, "selections": canonical, "status": "current"}, False


def record_rollback(conn: Connection, settings: Settings, market_id: str, version: int, *,
                    actor: str, now: datetime | None = None) -> bool:
    """Mark result `version` rolled back; True if it was current, False if already rolled back."""
    now = now or datetime.now(UTC)
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('market:' || :m))"), {"m": market_id})
    status = conn.execute(text("SELECT status FROM market_results WHERE market_id = :m AND version = :v"),
                          {"m": market_id, "v": version}).scalar()
    if status == "rolled_back":
        return False
    if status != "current":
        raise ResultRefused("result_not_current",
                            f"version {version} is not the current result of market {market_id}")
    _window_check(conn, settings, market_id, now)
    conn.execute(text("UPDATE market_results SET status = 'rolled_back' WHERE market_id = :m AND version = :v"),
                 {"m": market_id, "v": version})
    audit.record(conn, actor=actor, action="market.result_rolled_back", subject_type="market",
                 subject_id=market_id, before={"version": version, "status": "current"},
                 after={"version": version, "status": "rolled_back"})
    outbox.emit(conn, event_type="market.result_rolled_back", aggregate_type="market",
                aggregate_id=market_id, payload={"market_id": market_id, "version": version})
    return True


# --- a settlement run ----------------------------------------------------------------------

def begin(conn: Connection, settings: Settings, market_id: str, version: int, mode: str,
          workflow_id: str) -> str:
    """Mark the market's run started; returns the state. Refuses a run whose result is gone."""
    status = conn.execute(text("SELECT status FROM market_results WHERE market_id = :m AND version = :v"),
                          {"m": market_id, "v": version}).scalar()
    if status is None:
        raise ResultRefused("result_not_found", f"market {market_id} has no result version {version}")
    if mode == SETTLE and status == "rolled_back":
        raise ResultRefused("result_rolled_back", f"result version {version} of market {market_id} was rolled back")
    was = conn.execute(text("SELECT state FROM market_settlements WHERE market_id = :m FOR UPDATE"),
                       {"m": market_id}).scalar()
    if mode == ROLLBACK:
        state = "rolling_back"
    else:
        state = "resettling" if was in ("settled", "resettling") else "settling"
    conn.execute(text("""
        INSERT INTO market_settlements (market_id, version, state, workflow_id)
        VALUES (:m, :v, :s, :wf)
        ON CONFLICT (market_id) DO UPDATE
           SET version = excluded.version, state = excluded.state, workflow_id = excluded.workflow_id,
               bets_processed = 0, bets_posted = 0, updated_at = now()
         -- A late run of an older version still settles against the current results, but it
         -- does not take the market's status back to its version.
         WHERE market_settlements.version <= excluded.version"""),
        {"m": market_id, "v": version, "s": state, "wf": workflow_id})
    audit.record(conn, actor=f"workflow:{workflow_id}", action=f"market.{state}", subject_type="market",
                 subject_id=market_id, before={"state": was}, after={"state": state, "version": version})
    return state


def finish(conn: Connection, market_id: str, version: int, mode: str, workflow_id: str,
           processed: int, posted: int) -> dict[str, Any]:
    """Mark the run done (only if it is still the market's newest run) and announce it."""
    state = "rolled_back" if mode == ROLLBACK else "settled"
    updated = conn.execute(text("""
        UPDATE market_settlements
           SET state = :s, bets_processed = :n, bets_posted = :p, updated_at = now(),
               first_settled_at = CASE WHEN :s = 'settled' THEN coalesce(first_settled_at, now())
                                       ELSE first_settled_at END
         WHERE market_id = :m AND workflow_id = :wf
        RETURNING market_id"""),
        {"s": state, "n": processed, "p": posted, "m": market_id, "wf": workflow_id}).scalar()
    result = summary(conn, market_id)
    if updated is not None:
        audit.record(conn, actor=f"workflow:{workflow_id}", action=f"market.{state}", subject_type="market",
                     subject_id=market_id, before=None,
                     after={"version": version, "bets_processed": processed, "bets_posted": posted})
        outbox.emit(conn, event_type=f"market.{state}", aggregate_type="market", aggregate_id=market_id,
                    payload={"market_id": market_id, "version": version, "bets": result["bets"],
                             "totals": result["totals"]})
    return result


def plan_round(conn: Connection, market_id: str, after: str, size: int) -> str | None:
    """The bet id that closes the next round: the `size`-th bet on the market after `after`
    (or the last one, when fewer remain); None when no bet is left. One indexed scan."""
    return conn.execute(text("""
        SELECT max(bet_id) FROM (SELECT bet_id FROM bet_legs WHERE market_id = :m AND bet_id > :after
                                  ORDER BY bet_id LIMIT :size) b"""),
        {"m": market_id, "after": after, "size": size}).scalar()


# --- one batch ------------------------------------------------------------------------------

@dataclass
class BatchOutcome:
    processed: int = 0          # bets looked at
    posted: int = 0             # ledger postings made
    pending: int = 0            # parlays still waiting for another market
    skipped: int = 0            # upgrade_only downgrades kept out
    payout_delta: int = 0       # net moved to players by this batch
    items: list[dict[str, Any]] = field(default_factory=list)


def domain_bet(bet_type: str, stake: int, legs: list[tuple[str, str, int, int]],
               place_fraction: str | None, place_count: int | None) -> Bet:
    """The pure bet from its stored rows (legs as (market, selection, price num, price den))."""
    terms = PlaceTerms(Fraction(place_fraction), place_count) if place_fraction else None
    return Bet(BetType(bet_type), stake, tuple(Leg(m, s, Fraction(pn, pd)) for m, s, pn, pd in legs),
               place_terms=terms)


def current_results(conn: Connection, markets: set[str]) -> tuple[dict, dict[str, int]]:
    rows = conn.execute(text("""SELECT market_id, version, selections FROM market_results
                                 WHERE market_id = ANY(:m) AND status = 'current'"""),
                        {"m": sorted(markets)}).all()
    results: dict[tuple[str, str], SelectionResult] = {}
    versions: dict[str, int] = {}
    for row in rows:
        versions[row.market_id] = row.version
        for sid, r in row.selections.items():
            results[(row.market_id, sid)] = SelectionResult.from_json(r)
    return results, versions


def _settlement_legs(player: str, currency: str, stake: int, payout: int) -> tuple[ledger.Leg, ...]:
    legs = [ledger.Leg(AccountRef.bets_in_play(player, currency), -stake)]
    if payout:
        legs.append(ledger.Leg(AccountRef.player_cash(player, currency), payout))
    if stake - payout:
        legs.append(ledger.Leg(AccountRef.house_revenue(currency), stake - payout))
    return tuple(legs)


def _delta_legs(player: str, currency: str, delta: int) -> tuple[ledger.Leg, ...]:
    cash = AccountRef.player_cash(player, currency)
    shortfall = AccountRef.player_debt(player, currency) if delta < 0 else None
    return (ledger.Leg(cash, delta, shortfall_to=shortfall),
            ledger.Leg(AccountRef.house_revenue(currency), -delta))


def _reversal_legs(player: str, currency: str, stake: int, paid: int) -> tuple[ledger.Leg, ...]:
    legs = [ledger.Leg(AccountRef.bets_in_play(player, currency), stake)]
    if paid > 0:
        legs.append(ledger.Leg(AccountRef.player_cash(player, currency), -paid,
                               shortfall_to=AccountRef.player_debt(player, currency)))
    elif paid < 0:  # cannot happen with payouts >= 0; kept so the reversal is always exact
        legs.append(ledger.Leg(AccountRef.player_cash(player, currency), -paid))
    if stake - paid:
        legs.append(ledger.Leg(AccountRef.house_revenue(currency), -(stake - paid)))
    return tuple(legs)


@dataclass
class _Step:
    """What one bet needs: a settlement row to keep, maybe a posting, maybe a bet update."""
    row: dict[str, Any] | None = None
    transfer: Transfer | None = None
    update: dict[str, Any] | None = None
    pending: bool = False
    skipped: bool = False


def _bet_update(bet_id: str, status: str, paid: int, payout: int | None, version: int | None,
                settlement_key: str | None) -> dict[str, Any]:
    return {"id": bet_id, "status": status, "paid": paid, "payout": payout, "version": version,
            "settlement_key": settlement_key, "settled": status == "settled"}


def _settlement_row(bet: Any, kind: str, version: int, payout: int, delta: int, applied: bool,
                    outcome: str, key: str | None, used: dict[str, Any]) -> dict[str, Any]:
    return {"bet_id": bet.id, "player_id": bet.player_id, "kind": kind, "version": version,
            "payout": payout, "delta": delta, "applied": applied, "outcome": outcome,
            "ledger_key": key, "results": used}


def _rollback_step(bet: Any, market_id: str, version: int, used: dict[str, Any]) -> _Step | None:
    """Reverse everything the bet's settlement posted and open it again."""
    if bet.status != "settled":
        return None
    key = f"bet:{bet.id}:rollback:v{bet.version}"
    return _Step(
        row=_settlement_row(bet, "rollback", bet.version, 0, -bet.paid, True, "rolled_back", key, used),
        transfer=Transfer(key=key, kind="settlement_rollback", reference=bet.id, corrects=bet.settlement_key,
                          legs=_reversal_legs(bet.player_id, bet.currency, bet.stake, bet.paid),
                          metadata={"market": market_id, "version": version}),
        update=_bet_update(bet.id, "open", 0, None, None, None))


def _settle_step(bet: Any, market_id: str, results: Any, versions: dict[str, int],
                 used: dict[str, Any], upgrade_only: bool) -> _Step | None:
    """Settle an open bet, or post the delta of a settled one (None: nothing to do)."""
    legs = [(m, s, int(pn), int(pd)) for m, s, pn, pd in bet.legs]
    settled = settle(domain_bet(bet.bet_type, bet.stake, legs, bet.place_fraction, bet.place_count), results)
    if isinstance(settled, Pending):
        return _Step(pending=True)
    version = sum(versions[m] for m in {leg[0] for leg in legs})
    outcome, payout = str(settled.outcome), settled.payout
    key = f"bet:{bet.id}:v{version}"
    meta = {"market": market_id, "version": version}

    if bet.status == "open":
        return _Step(
            row=_settlement_row(bet, "settlement", version, payout, payout, True, outcome, key, used),
            transfer=Transfer(key=key, kind="settlement", reference=bet.id, metadata=meta,
                              legs=_settlement_legs(bet.player_id, bet.currency, bet.stake, payout)),
            update=_bet_update(bet.id, "settled", payout, payout, version, key))
    if version <= bet.version:
        return None   # already settled against these results (a re-run): nothing to do
    delta = payout - bet.paid
    if delta == 0:
        if bet.payout != payout:   # back to what was paid after a kept-out downgrade
            return _Step(update=_bet_update(bet.id, "settled", bet.paid, payout, bet.version, bet.settlement_key))
        return None   # unchanged: no posting, no new version
    if delta < 0 and upgrade_only:
        return _Step(
            row=_settlement_row(bet, "resettlement", version, payout, 0, False, outcome, None, used),
            update=_bet_update(bet.id, "settled", bet.paid, payout, version, bet.settlement_key), skipped=True)
    return _Step(
        row=_settlement_row(bet, "resettlement", version, payout, delta, True, outcome, key, used),
        transfer=Transfer(key=key, kind="resettlement", reference=bet.id, corrects=bet.settlement_key,
                          metadata=meta, legs=_delta_legs(bet.player_id, bet.currency, delta)),
        update=_bet_update(bet.id, "settled", payout, payout, version, bet.settlement_key))


def settle_range(conn: Connection, settings: Settings, market_id: str, version: int, mode: str,
                 lo: str, hi: str, *, part: int = 0, parts: int = 1, actor: str,
                 fail_before_commit: bool = False) -> BatchOutcome:
    """Settle (or roll back) the bets on `market_id` with lo < id <= hi whose player falls in
    partition `part` of `parts`, in the caller's transaction: one ledger.post_many, one insert
    of settlement rows, one update of bets, one audit record and one outbox event.

    Partitioning a round by player lets its batches run at once without waiting on each
    other's locks: no two parts of a round touch the same player's accounts."""
    bets = conn.execute(text("""
        SELECT b.id, b.player_id, b.currency, b.stake, b.bet_type, b.place_fraction, b.place_count,
               b.status, b.paid, b.payout, b.version, b.settlement_key,
               (SELECT array_agg(ARRAY[l.market_id, l.selection_id, l.price_num::text, l.price_den::text]
                                 ORDER BY l.leg_no) FROM bet_legs l WHERE l.bet_id = b.id) AS legs
          FROM bets b
         WHERE b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m AND bet_id > :lo AND bet_id <= :hi)
           AND b.status <> 'rejected'
           AND (:parts = 1 OR mod(abs(hashtext(b.player_id)::bigint), :parts) = :part)
         ORDER BY b.id
           FOR UPDATE OF b"""), {"m": market_id, "lo": lo, "hi": hi, "part": part, "parts": parts}).all()
    out = BatchOutcome(processed=len(bets))
    if not bets:
        return out
    results, versions = current_results(conn, {leg[0] for bet in bets for leg in bet.legs})
    results_json = {key: r.to_json() for key, r in results.items()}   # kept with each settlement
    upgrade_only = settings.resettlement_policy == "upgrade_only"

    steps: list[_Step] = []
    for bet in bets:
        used = {f"{m}/{s}": results_json[(m, s)] for m, s, _, _ in bet.legs if (m, s) in results_json}
        step = (_rollback_step(bet, market_id, version, used) if mode == ROLLBACK
                else _settle_step(bet, market_id, results, versions, used, upgrade_only))
        if step is not None:
            steps.append(step)
    out.pending = sum(s.pending for s in steps)
    out.skipped = sum(s.skipped for s in steps)

    transfers = [s.transfer for s in steps if s.transfer is not None]
    posted = {t.key: r for t, r in zip(transfers, ledger.post_many(conn, transfers))}
    for key, result in posted.items():
        if not result.ok:
            # bets_in_play always holds the stake of an open bet: this is a broken invariant.
            raise RuntimeError(f"ledger refused {key}: {result.code}")
    rows = [s.row for s in steps if s.row is not None]
    for row in rows:
        result = posted.get(row["ledger_key"]) if row["ledger_key"] else None
        row["transaction_id"] = result.transaction_id if result else None
        row["shortfall"] = result.shortfall if result else 0
    updates = [s.update for s in steps if s.update is not None]
    _write_rows(conn, market_id, rows, updates)

    out.posted = len(transfers)
    out.payout_delta = sum(r["delta"] for r in rows if r["applied"])
    out.items = [{k: r[k] for k in ("bet_id", "player_id", "kind", "version", "payout", "delta", "applied")}
                 for r in rows]
    if rows:
        audit.record(conn, actor=actor, action=f"settlement.batch_{'rolled_back' if mode == ROLLBACK else 'posted'}",
                     subject_type="market", subject_id=market_id, before=None,
                     after={"version": version, "range": [lo, hi], "part": [part, parts], "bets": len(rows), "postings": out.posted,
                            "skipped": out.skipped, "payout_delta": out.payout_delta,
                            "ledger_keys": [t.key for t in transfers]})
        outbox.emit(conn, event_type="bets.rolled_back" if mode == ROLLBACK else "bets.settled",
                    aggregate_type="market", aggregate_id=market_id,
                    payload={"market_id": market_id, "version": version, "bets": out.items})
    if fail_before_commit:
        # Test hook: a worker dying after the work but before COMMIT.
        raise RuntimeError("injected failure before commit")
    return out


def _write_rows(conn: Connection, market_id: str, rows: list[dict[str, Any]],
                updates: list[dict[str, Any]]) -> None:
    """The batch's settlement rows and bet updates, one statement each."""
    if rows:
        conn.execute(text("""
            INSERT INTO bet_settlements (bet_id, kind, version, market_id, payout, delta, applied, outcome,
                                         ledger_key, transaction_id, shortfall, results)
            SELECT r.bet_id, r.kind, r.version, :m, r.payout, r.delta, r.applied, r.outcome, r.ledger_key,
                   r.transaction_id, r.shortfall, r.results
              FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(bet_id text, kind text, version int,
                   payout bigint, delta bigint, applied boolean, outcome text, ledger_key text,
                   transaction_id bigint, shortfall bigint, results jsonb)
            ON CONFLICT DO NOTHING"""), {"m": market_id, "rows": json.dumps(rows)})
    if updates:
        conn.execute(text("""
            UPDATE bets b
               SET status = u.status, paid = u.paid, payout = u.payout, version = u.version,
                   settlement_key = u.settlement_key, updated_at = now(),
                   settled_at = CASE WHEN u.settled THEN coalesce(b.settled_at, now()) END
              FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(id text, status text, paid bigint,
                   payout bigint, version int, settlement_key text, settled boolean)
             WHERE b.id = u.id"""), {"rows": json.dumps(updates)})


# --- reading -------------------------------------------------------------------------------

def summary(conn: Connection, market_id: str) -> dict[str, Any]:
    """Version, state, counts and totals of a market's settlement."""
    state = conn.execute(text("""SELECT version, state, workflow_id, bets_processed, bets_posted,
                                        first_settled_at, updated_at
                                   FROM market_settlements WHERE market_id = :m"""),
                         {"m": market_id}).mappings().one_or_none()
    counts = conn.execute(text("""
        SELECT count(*) AS total,
               count(*) FILTER (WHERE b.status = 'open') AS open,
               count(*) FILTER (WHERE b.status = 'settled') AS settled,
               coalesce(sum(b.stake) FILTER (WHERE b.status = 'settled'), 0) AS stake,
               coalesce(sum(b.paid) FILTER (WHERE b.status = 'settled'), 0) AS paid,
               b.currency
          FROM bets b WHERE b.status <> 'rejected'
           AND b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
         GROUP BY b.currency"""), {"m": market_id}).mappings().all()
    versions = conn.execute(text("""SELECT version, status, received_at FROM market_results
                                     WHERE market_id = :m ORDER BY version"""), {"m": market_id}).mappings().all()
    bets = {"total": 0, "open": 0, "settled": 0}
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for c in counts:
        for k in bets:
            bets[k] += c[k]
        totals[c["currency"].strip()] = {"stake": int(c["stake"]), "paid": int(c["paid"]),
                                         "house": int(c["stake"]) - int(c["paid"])}
    return {
        "market_id": market_id,
        "version": state["version"] if state else None,
        "state": state["state"] if state else ("pending" if versions else "open"),
        "workflow_id": state["workflow_id"] if state else None,
        "run": {"bets_processed": state["bets_processed"], "bets_posted": state["bets_posted"]} if state else None,
        "first_settled_at": state["first_settled_at"] if state else None,
        "bets": bets,
        "totals": dict(totals),
        "result_versions": [dict(v) for v in versions],
    }
