"""Responsible-gaming rows: the per-player lock, deposit limits, pending changes, the usage
counted against the limits, and exclusions.

Every function runs in the caller's transaction. `lock_player` must come first in any
transaction that reads limits or usage to decide something: it serialises that player's
deposits and limit changes. Must never: decide anything (that is `domain.limits` and
`compliance.limits`), or write an audit record (`commands.limits` does, with the change).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from domain.limits import Exclusion, ExclusionKind, LimitChangePlan, PendingChange, Period


def player_partner(conn: Connection, player_id: str) -> str | None:
    """The partner owning the player, None when there is no such player."""
    return conn.execute(text("SELECT partner_id FROM players WHERE id = :id"),
                        {"id": player_id}).scalar()


def lock_player(conn: Connection, player_id: str) -> None:
    """Take the player's responsible-gaming lock until the transaction ends: one statement
    once the player has a lock row; the first time, the row is made (a concurrent maker's
    insert waits for it to commit or roll back), then locked by a statement that sees it."""
    lock = text("SELECT 1 FROM responsible_gaming_players WHERE player_id = :id FOR UPDATE")
    if conn.execute(lock, {"id": player_id}).first() is not None:
        return
    conn.execute(text("""INSERT INTO responsible_gaming_players (player_id) VALUES (:id)
                         ON CONFLICT (player_id) DO NOTHING"""), {"id": player_id})
    conn.execute(lock, {"id": player_id})


# --- limits --------------------------------------------------------------------------------

def limits(conn: Connection, player_id: str) -> dict[str, dict[Period, int]]:
    """Limits in force as stored: currency -> period -> amount."""
    out: dict[str, dict[Period, int]] = {}
    for currency, period, amount in conn.execute(text(
            "SELECT currency, period, amount FROM deposit_limits WHERE player_id = :id"),
            {"id": player_id}):
        out.setdefault(currency, {})[Period(period)] = amount
    return out


def set_limit(conn: Connection, player_id: str, currency: str, period: Period, amount: int | None,
              now: datetime) -> None:
    if amount is None:
        conn.execute(text("""DELETE FROM deposit_limits
                             WHERE player_id = :p AND currency = :c AND period = :period"""),
                     {"p": player_id, "c": currency, "period": period.value})
        return
    conn.execute(text("""
        INSERT INTO deposit_limits (player_id, currency, period, amount, updated_at)
        VALUES (:p, :c, :period, :amount, :now)
        ON CONFLICT (player_id, currency, period) DO UPDATE SET amount = EXCLUDED.amount,
                                                               updated_at = EXCLUDED.updated_at"""),
                 {"p": player_id, "c": currency, "period": period.value, "amount": amount,
                  "now": now})


@dataclass(frozen=True)
class StoredChange:
    id: int
    currency: str
    change: PendingChange
    requested_at: datetime


def pending_changes(conn: Connection, player_id: str) -> list[StoredChange]:
    rows = conn.execute(text("""
        SELECT id, currency, period, amount, effective_at, requested_at FROM deposit_limit_changes
        WHERE player_id = :id AND status = 'pending' ORDER BY effective_at, id"""),
        {"id": player_id})
    return [StoredChange(r.id, r.currency,
                         PendingChange(Period(r.period), r.amount, r.effective_at),
                         r.requested_at) for r in rows]


def limits_and_pending(conn: Connection, player_id: str,
                       ) -> tuple[dict[str, dict[Period, int]], list[StoredChange]]:
    """`limits` and `pending_changes` of the player in one statement (one round trip, one
    snapshot), with the same answers."""
    rows = conn.execute(text("""
        SELECT 0 AS part, NULL::bigint AS id, currency, period, amount,
               NULL::timestamptz AS effective_at, NULL::timestamptz AS requested_at
        FROM deposit_limits WHERE player_id = :id
        UNION ALL
        SELECT 1, id, currency, period, amount, effective_at, requested_at
        FROM deposit_limit_changes WHERE player_id = :id AND status = 'pending'
        ORDER BY part, effective_at, id"""), {"id": player_id}).all()
    stored: dict[str, dict[Period, int]] = {}
    pending: list[StoredChange] = []
    for r in rows:
        if r.part == 0:
            stored.setdefault(r.currency, {})[Period(r.period)] = r.amount
        else:
            pending.append(StoredChange(r.id, r.currency,
                                        PendingChange(Period(r.period), r.amount, r.effective_at),
                                        r.requested_at))
    return stored, pending


def resolve_pending(conn: Connection, change_id: int, status: str, now: datetime) -> None:
    conn.execute(text("""UPDATE deposit_limit_changes SET status = :status, resolved_at = :now
                         WHERE id = :id AND status = 'pending'"""),
                 {"id": change_id, "status": status, "now": now})


def add_pending(conn: Connection, player_id: str, currency: str, period: Period, amount: int | None,
                plan: LimitChangePlan, now: datetime) -> int:
    return conn.execute(text("""
        INSERT INTO deposit_limit_changes (player_id, currency, period, amount, requested_at,
                                           effective_at)
        VALUES (:p, :c, :period, :amount, :now, :effective_at) RETURNING id"""),
        {"p": player_id, "c": currency, "period": period.value, "amount": amount, "now": now,
         "effective_at": plan.effective_at}).scalar_one()


# --- usage ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    deposit_id: str
    player_id: str
    currency: str
    amount: int
    status: str          # reserved | released | rejected
    code: str
    reason: str
    reserved_at: datetime


def used(conn: Connection, player_id: str, currency: str, windows: dict[Period, datetime],
         now: datetime, *, deposit_id_excluded: str | None = None) -> dict[Period, int]:
    """Reserved amounts per rolling window (window start -> now), in one query; the
    reservation of `deposit_id_excluded` (the deposit being checked) is not counted."""
    sums = ", ".join(f"COALESCE(SUM(amount) FILTER (WHERE reserved_at > :start_{p.value}), 0)"
                     f" AS {p.value}" for p in windows)
    params = {f"start_{p.value}": start for p, start in windows.items()}
    row = conn.execute(text(f"""
        SELECT {sums} FROM deposit_limit_usage
        WHERE player_id = :p AND currency = :c AND status = 'reserved'
          AND reserved_at > :oldest AND reserved_at <= :now
          AND deposit_id IS DISTINCT FROM :excluded"""),
        {**params, "p": player_id, "c": currency, "now": now,
         "oldest": min(windows.values()), "excluded": deposit_id_excluded}).one()
    return {p: int(getattr(row, p.value)) for p in windows}


def usage(conn: Connection, deposit_id: str, *, for_update: bool = False) -> Usage | None:
    row = conn.execute(text(
        "SELECT deposit_id, player_id, currency, amount, status, code, reason, reserved_at "
        "FROM deposit_limit_usage WHERE deposit_id = :id" + (" FOR UPDATE" if for_update else "")),
        {"id": deposit_id}).first()
    return Usage(**row._mapping) if row else None


def add_usage(conn: Connection, u: Usage) -> None:
    conn.execute(text("""
        INSERT INTO deposit_limit_usage (deposit_id, player_id, currency, amount, status, code,
                                         reason, reserved_at)
        VALUES (:deposit_id, :player_id, :currency, :amount, :status, :code, :reason,
                :reserved_at)"""),
        u.__dict__)


def release_usage(conn: Connection, deposit_id: str, now: datetime) -> None:
    conn.execute(text("""UPDATE deposit_limit_usage SET status = 'released', released_at = :now
                         WHERE deposit_id = :id AND status = 'reserved'"""),
                 {"id": deposit_id, "now": now})


# --- a reservation's reads, under the lock ------------------------------------------------

@dataclass(frozen=True)
class ReservationReads:
    """What a deposit's reservation decides on, read together (`reservation_reads`)."""

    usage: Usage | None                        # the deposit's own reservation, if recorded
    limits: dict[str, dict[Period, int]]       # as `limits`
    pending: list[StoredChange]                # as `pending_changes`
    exclusions: list[StoredExclusion]          # as `exclusions`


def reservation_reads(conn: Connection, player_id: str, deposit_id: str) -> ReservationReads:
    """`usage(deposit_id)`, `limits`, `pending_changes` and `exclusions` of the player in one
    statement (one round trip, one snapshot), in the same orders. Made after `lock_player`."""
    row = conn.execute(text("""
        SELECT
          (SELECT to_jsonb(u) FROM (
             SELECT deposit_id, player_id, currency, amount, status, code, reason, reserved_at
             FROM deposit_limit_usage WHERE deposit_id = :deposit) u) AS usage,
          (SELECT COALESCE(jsonb_agg(jsonb_build_array(currency, period, amount)), '[]')
           FROM deposit_limits WHERE player_id = :player) AS limits,
          (SELECT COALESCE(jsonb_agg(jsonb_build_array(id, currency, period, amount, effective_at,
                                                       requested_at)
                                     ORDER BY effective_at, id), '[]')
           FROM deposit_limit_changes
           WHERE player_id = :player AND status = 'pending') AS pending,
          (SELECT COALESCE(jsonb_agg(jsonb_build_array(id, kind, starts_at, ends_at, actor)
                                     ORDER BY starts_at, id), '[]')
           FROM player_exclusions WHERE player_id = :player) AS exclusions"""),
        {"player": player_id, "deposit": deposit_id}).one()
    usage = None
    if row.usage is not None:
        usage = Usage(**{**row.usage, "reserved_at": _timestamp(row.usage["reserved_at"])})
    limits: dict[str, dict[Period, int]] = {}
    for currency, period, amount in row.limits:
        limits.setdefault(currency, {})[Period(period)] = amount
    pending = [StoredChange(change_id, currency,
                            PendingChange(Period(period), amount, _timestamp(effective_at)),
                            _timestamp(requested_at))
               for change_id, currency, period, amount, effective_at, requested_at in row.pending]
    exclusions = [StoredExclusion(exclusion_id, Exclusion(ExclusionKind(kind),
                                                          _timestamp(starts_at),
                                                          _timestamp(ends_at)), actor)
                  for exclusion_id, kind, starts_at, ends_at, actor in row.exclusions]
    return ReservationReads(usage, limits, pending, exclusions)


def _timestamp(value: str | None) -> datetime | None:
    """A timestamptz as jsonb writes it (ISO 8601 with its offset), as psycopg would load it."""
    return None if value is None else datetime.fromisoformat(value)


# --- exclusions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredExclusion:
    id: str
    exclusion: Exclusion
    actor: str


def exclusions(conn: Connection, player_id: str) -> list[StoredExclusion]:
    rows = conn.execute(text("""SELECT id, kind, starts_at, ends_at, actor FROM player_exclusions
                                WHERE player_id = :id ORDER BY starts_at, id"""), {"id": player_id})
    return [StoredExclusion(r.id, Exclusion(ExclusionKind(r.kind), r.starts_at, r.ends_at), r.actor)
            for r in rows]


def add_exclusion(conn: Connection, player_id: str, exclusion: Exclusion,
                  actor: str) -> StoredExclusion:
    exclusion_id = "exc_" + uuid.uuid4().hex
    conn.execute(text("""INSERT INTO player_exclusions (id, player_id, kind, starts_at, ends_at,
                                                        actor)
                         VALUES (:id, :p, :kind, :starts_at, :ends_at, :actor)"""),
                 {"id": exclusion_id, "p": player_id, "kind": exclusion.kind.value,
                  "starts_at": exclusion.starts_at, "ends_at": exclusion.ends_at, "actor": actor})
    return StoredExclusion(exclusion_id, exclusion, actor)


def active_exclusions(items: Iterable[StoredExclusion], now: datetime) -> list[StoredExclusion]:
    return [s for s in items if s.exclusion.active(now)]
