"""Partner webhook tables as SQL: endpoints, partner events, messages (deliveries), attempts.

Writes only the webhook_* tables and `outbox_events.published_at`; reads outbox_events,
players, bets and bet_legs to attribute domain events to partners. Every time is a parameter
(the dispatcher's clock), never the database's now(), so tests can move time.
Changing an endpoint with its audit record is `commands.webhooks`; who may see what is the
caller's `partner_id` argument (None: an operator, everything). Must never: call audit,
outbox.emit, the ledger or a gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping, text

# Session advisory locks (two-key form) held by each running dispatcher: (LOCK_CLASS, owner).
LOCK_CLASS = 0x5748          # "WH"

ENDPOINT_CHANGEABLE = frozenset({
    "url", "description", "event_types", "rate_limit_per_minute", "status", "disabled_reason",
    "secret_sealed", "previous_secret_sealed", "previous_secret_expires_at", "failing_since",
    "throttled_until"})


class Lane(StrEnum):
    FIRST = "first"      # attempts = 0: new events, resends, recoveries
    RETRY = "retry"      # attempts > 0

    @property
    def condition(self) -> str:
        return "m.attempts = 0" if self is Lane.FIRST else "m.attempts > 0"


def _partner_clause(partner_id: str | None, column: str = "partner_id") -> str:
    return "" if partner_id is None else f" AND {column} = :partner_id"


# --- endpoints ------------------------------------------------------------------------------

def insert_endpoint(conn: Connection, *, endpoint_id: str, partner_id: str, url: str,
                    description: str, event_types: Sequence[str],
                    rate_limit_per_minute: int | None, secret_sealed: str,
                    now: datetime) -> RowMapping | None:
    """The new endpoint's row; None when the id exists (the same operation ran before)."""
    return conn.execute(text("""
        INSERT INTO webhook_endpoints (id, partner_id, url, description, event_types,
                                       rate_limit_per_minute, secret_sealed, created_at,
                                       updated_at)
        VALUES (:id, :partner_id, :url, :description, :event_types, :rate, :secret, :now, :now)
        ON CONFLICT (id) DO NOTHING RETURNING *"""),
        {"id": endpoint_id, "partner_id": partner_id, "url": url, "description": description,
         "event_types": list(event_types), "rate": rate_limit_per_minute,
         "secret": secret_sealed, "now": now}).mappings().one_or_none()


def get_endpoint(conn: Connection, endpoint_id: str, *, partner_id: str | None = None,
                 for_update: bool = False, deleted: bool = False) -> RowMapping | None:
    """The endpoint (not deleted unless `deleted`), or None; with `partner_id` only that
    partner's."""
    sql = "SELECT * FROM webhook_endpoints WHERE id = :id" + _partner_clause(partner_id)
    if not deleted:
        sql += " AND status <> 'deleted'"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql), {"id": endpoint_id,
                                    "partner_id": partner_id}).mappings().one_or_none()


def list_endpoints(conn: Connection, *, partner_id: str | None = None) -> list[RowMapping]:
    sql = ("SELECT * FROM webhook_endpoints WHERE status <> 'deleted'"
           + _partner_clause(partner_id) + " ORDER BY created_at, id")
    return list(conn.execute(text(sql), {"partner_id": partner_id}).mappings())


def update_endpoint(conn: Connection, endpoint_id: str, changes: Mapping[str, Any],
                    now: datetime) -> RowMapping:
    unknown = set(changes) - ENDPOINT_CHANGEABLE
    if unknown:
        raise ValueError(f"not changeable: {sorted(unknown)}")
    sets = ", ".join(f"{column} = :{column}" for column in changes)
    params = {column: list(value) if column == "event_types" else value
              for column, value in changes.items()}
    return conn.execute(text(f"""UPDATE webhook_endpoints SET {sets}, updated_at = :now
                                  WHERE id = :id RETURNING *"""),
                        {**params, "id": endpoint_id, "now": now}).mappings().one()


def enabled_endpoints(conn: Connection) -> list[RowMapping]:
    """id, partner_id, event_types of every enabled endpoint (the fan-out's candidates)."""
    return list(conn.execute(text("""SELECT id, partner_id, event_types FROM webhook_endpoints
                                      WHERE status = 'enabled'""")).mappings())


def fail_pending(conn: Connection, endpoint_id: str, now: datetime) -> int:
    """Pending messages of the endpoint become failed (it was disabled or deleted)."""
    return conn.execute(text("""
        UPDATE webhook_messages SET status = 'failed', next_attempt_at = NULL, updated_at = :now
         WHERE endpoint_id = :id AND status = 'pending'"""), {"id": endpoint_id, "now": now}
    ).rowcount


def mark_success(conn: Connection, endpoint_ids: Iterable[str], now: datetime) -> None:
    conn.execute(text("""UPDATE webhook_endpoints SET last_success_at = :now, failing_since = NULL
                          WHERE id = ANY(:ids)"""), {"ids": list(endpoint_ids), "now": now})


def mark_failing(conn: Connection, endpoint_ids: Iterable[str], now: datetime) -> None:
    conn.execute(text("""UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :now)
                          WHERE id = ANY(:ids)"""), {"ids": list(endpoint_ids), "now": now})


def throttle(conn: Connection, until_by_endpoint: Mapping[str, datetime]) -> None:
    if not until_by_endpoint:
        return
    conn.execute(text("""
        UPDATE webhook_endpoints p
           SET throttled_until = greatest(coalesce(p.throttled_until, u.until), u.until)
          FROM unnest(CAST(:ids AS text[]), CAST(:untils AS timestamptz[])) AS u(id, until)
         WHERE p.id = u.id"""),
        {"ids": list(until_by_endpoint), "untils": list(until_by_endpoint.values())})


def disable_if(conn: Connection, endpoint_ids: Iterable[str], reason: str, now: datetime, *,
               failing_before: datetime | None = None) -> list[RowMapping]:
    """Disable the enabled endpoints among `endpoint_ids` (with `failing_before`: only those
    failing since then or earlier); the rows disabled."""
    sql = """UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = :reason,
                    updated_at = :now
              WHERE id = ANY(:ids) AND status = 'enabled'"""
    if failing_before is not None:
        sql += " AND failing_since <= :before"
    return list(conn.execute(text(sql + " RETURNING *"),
                             {"ids": list(endpoint_ids), "reason": reason, "now": now,
                              "before": failing_before}).mappings())


# --- the outbox and attribution --------------------------------------------------------------

def claim_outbox(conn: Connection, limit: int, *, skip: Sequence[int] = (),
                 only: Sequence[int] | None = None) -> list[RowMapping]:
    """Unpublished domain events, oldest first, locked for this transaction (SKIP LOCKED: N
    dispatchers take different rows); without the ids in `skip`, or just those in `only`."""
    which = "AND id = ANY(:only)" if only is not None else "AND NOT (id = ANY(:skip))"
    return list(conn.execute(text(f"""
        SELECT id, event_type, aggregate_type, aggregate_id, player_id, partner_id, payload,
               created_at
          FROM outbox_events WHERE published_at IS NULL {which}
         ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"""),
        {"n": limit, "skip": list(skip), "only": list(only or [])}).mappings())


def mark_published(conn: Connection, outbox_ids: Sequence[int], now: datetime) -> None:
    conn.execute(text("UPDATE outbox_events SET published_at = :now WHERE id = ANY(:ids)"),
                 {"ids": list(outbox_ids), "now": now})


def partners_of_players(conn: Connection, player_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(player_ids))
    if not ids:
        return {}
    rows = conn.execute(text("SELECT id, partner_id FROM players WHERE id = ANY(:ids)"),
                        {"ids": ids})
    return {row.id: row.partner_id for row in rows}


def bets_by_id(conn: Connection, bet_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """bet id -> (partner_id, the betting engine's bet id)."""
    ids = sorted(set(bet_ids))
    if not ids:
        return {}
    rows = conn.execute(text("SELECT id, partner_id, external_id FROM bets WHERE id = ANY(:ids)"),
                        {"ids": ids})
    return {row.id: (row.partner_id, row.external_id) for row in rows}


def market_summaries(conn: Connection, market_id: str) -> dict[str, dict[str, Any]]:
    """Per partner with bets on the market: bet counts and, per currency, stake and paid of the
    settled bets."""
    rows = conn.execute(text("""
        SELECT b.partner_id, b.currency, count(*) AS total,
               count(*) FILTER (WHERE b.status = 'open') AS open,
               count(*) FILTER (WHERE b.status = 'settled') AS settled,
               coalesce(sum(b.stake) FILTER (WHERE b.status = 'settled'), 0) AS stake,
               coalesce(sum(b.paid) FILTER (WHERE b.status = 'settled'), 0) AS paid
          FROM bets b
         WHERE b.status <> 'rejected'
           AND b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
         GROUP BY b.partner_id, b.currency"""), {"m": market_id}).mappings()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        summary = out.setdefault(row["partner_id"], {"bets": {"total": 0, "open": 0,
                                                              "settled": 0}, "totals": {}})
        for key in ("total", "open", "settled"):
            summary["bets"][key] += int(row[key])
        summary["totals"][row["currency"].strip()] = {"stake": int(row["stake"]),
                                                      "paid": int(row["paid"])}
    return out


# --- events and messages ---------------------------------------------------------------------

def insert_events(conn: Connection, events: Sequence[Mapping[str, Any]], now: datetime) -> None:
    """Rows with id, partner_id, event_type, payload (JSON-able), occurred_at, outbox_id,
    endpoint_id."""
    if not events:
        return
    conn.execute(text("""
        INSERT INTO webhook_events (id, partner_id, event_type, payload, occurred_at, outbox_id,
                                    endpoint_id, created_at)
        SELECT e.id, e.partner_id, e.event_type, e.payload, e.occurred_at, e.outbox_id,
               e.endpoint_id, :now
          FROM unnest(CAST(:ids AS text[]), CAST(:partners AS text[]), CAST(:types AS text[]),
                      CAST(:payloads AS jsonb[]), CAST(:occurred AS timestamptz[]),
                      CAST(:outbox AS bigint[]), CAST(:endpoints AS text[]))
               AS e(id, partner_id, event_type, payload, occurred_at, outbox_id, endpoint_id)
         ORDER BY e.occurred_at, e.outbox_id"""),
        {"ids": [e["id"] for e in events], "partners": [e["partner_id"] for e in events],
         "types": [e["event_type"] for e in events],
         "payloads": [json.dumps(e["payload"], sort_keys=True, default=str) for e in events],
         "occurred": [e["occurred_at"] for e in events],
         "outbox": [e["outbox_id"] for e in events],
         "endpoints": [e["endpoint_id"] for e in events], "now": now})


def insert_messages(conn: Connection, messages: Sequence[tuple[str, str, str]], trigger: str,
                    now: datetime) -> int:
    """(event_id, endpoint_id, partner_id) rows, due now; a scheduled message is made once."""
    if not messages:
        return 0
    return conn.execute(text("""
        INSERT INTO webhook_messages (event_id, endpoint_id, partner_id, trigger, status,
                                      attempts, next_attempt_at, created_at, updated_at)
        SELECT m.event_id, m.endpoint_id, m.partner_id, :trigger, 'pending', 0, :now, :now, :now
          FROM unnest(CAST(:events AS text[]), CAST(:endpoints AS text[]),
                      CAST(:partners AS text[])) AS m(event_id, endpoint_id, partner_id)
        ON CONFLICT (event_id, endpoint_id) WHERE trigger = 'scheduled' DO NOTHING"""),
        {"events": [m[0] for m in messages], "endpoints": [m[1] for m in messages],
         "partners": [m[2] for m in messages], "trigger": trigger, "now": now}).rowcount


def recover_failed(conn: Connection, endpoint_id: str, since: datetime, now: datetime) -> int:
    """One `recover` message per event whose scheduled delivery to the endpoint failed since
    `since` and that has neither succeeded since nor a resend under way."""
    return conn.execute(text("""
        INSERT INTO webhook_messages (event_id, endpoint_id, partner_id, trigger, status,
                                      attempts, next_attempt_at, created_at, updated_at)
        SELECT DISTINCT m.event_id, m.endpoint_id, m.partner_id, 'recover', 'pending', 0, :now,
               :now, :now
          FROM webhook_messages m
         WHERE m.endpoint_id = :e AND m.trigger = 'scheduled' AND m.status = 'failed'
           AND m.updated_at >= :since     -- it failed (last changed) since then
           AND NOT EXISTS (SELECT 1 FROM webhook_messages s
                            WHERE s.event_id = m.event_id AND s.endpoint_id = m.endpoint_id
                              AND s.status IN ('succeeded', 'pending', 'sending'))"""),
        {"e": endpoint_id, "since": since, "now": now}).rowcount


def claim(conn: Connection, lane: Lane, owner: int, now: datetime, lease_until: datetime,
          limit: int, *, endpoint_id: str | None = None) -> list[RowMapping]:
    """Take up to `limit` due messages of the lane for `owner`: status sending, leased.

    Without `endpoint_id`: endpoints without a rate limit; with it: that endpoint only (its
    rate budget is the caller's business). Skips messages other dispatchers hold, endpoints
    not enabled and throttled endpoints. Returns what a delivery needs (event, endpoint)."""
    which = ("p.id = :endpoint_id" if endpoint_id is not None
             else "p.rate_limit_per_minute IS NULL")
    return list(conn.execute(text(f"""
        WITH due AS (
            SELECT m.id FROM webhook_messages m
              JOIN webhook_endpoints p ON p.id = m.endpoint_id
             WHERE m.status = 'pending' AND {lane.condition} AND m.next_attempt_at <= :now
               AND p.status = 'enabled' AND {which}
               AND (p.throttled_until IS NULL OR p.throttled_until <= :now)
             ORDER BY m.next_attempt_at LIMIT :n
             FOR UPDATE OF m SKIP LOCKED)
        UPDATE webhook_messages m
           SET status = 'sending', next_attempt_at = NULL, lease_owner = :owner,
               lease_until = :lease, updated_at = :now
          FROM due, webhook_events e, webhook_endpoints p
         WHERE m.id = due.id AND e.id = m.event_id AND p.id = m.endpoint_id
        RETURNING m.id, m.event_id, m.endpoint_id, m.partner_id, m.trigger, m.attempts,
                  e.event_type, e.payload, e.occurred_at, p.url, p.secret_sealed,
                  p.previous_secret_sealed, p.previous_secret_expires_at"""),
        {"now": now, "n": limit, "owner": owner, "lease": lease_until,
         "endpoint_id": endpoint_id}).mappings())


def rate_limited_due(conn: Connection, lane: Lane, now: datetime) -> list[RowMapping]:
    """Enabled, unthrottled, rate-limited endpoints with a due message in the lane, locked
    (SKIP LOCKED) for this transaction, with their current rate window."""
    return list(conn.execute(text(f"""
        SELECT p.id, p.rate_limit_per_minute, p.rate_window_started_at, p.rate_window_count
          FROM webhook_endpoints p
         WHERE p.status = 'enabled' AND p.rate_limit_per_minute IS NOT NULL
           AND (p.throttled_until IS NULL OR p.throttled_until <= :now)
           AND EXISTS (SELECT 1 FROM webhook_messages m
                        WHERE m.endpoint_id = p.id AND m.status = 'pending'
                          AND {lane.condition} AND m.next_attempt_at <= :now)
         FOR UPDATE OF p SKIP LOCKED"""), {"now": now}).mappings())


def set_rate_window(conn: Connection, endpoint_id: str, started_at: datetime,
                    count: int) -> None:
    conn.execute(text("""UPDATE webhook_endpoints SET rate_window_started_at = :started,
                                rate_window_count = :count WHERE id = :id"""),
                 {"id": endpoint_id, "started": started_at, "count": count})


def insert_attempts(conn: Connection, attempts: Sequence[Mapping[str, Any]]) -> None:
    if not attempts:
        return
    columns = ("message_id", "event_id", "endpoint_id", "partner_id", "trigger",
               "attempt_number", "status", "response_status_code", "response_body", "error",
               "duration_ms", "started_at", "next_attempt_at", "created_at")
    types = ("bigint", "text", "text", "text", "text", "integer", "text", "integer", "text",
             "text", "integer", "timestamptz", "timestamptz", "timestamptz")
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(columns, types, strict=True))
    conn.execute(text(f"""INSERT INTO webhook_attempts ({", ".join(columns)})
                          SELECT * FROM unnest({arrays})"""),
                 {c: [a[c] for a in attempts] for c in columns})


def finish_messages(conn: Connection, owner: int, updates: Sequence[Mapping[str, Any]],
                    now: datetime) -> None:
    """Messages this owner was sending: their status, attempts and next attempt time (a row
    re-driven to someone else meanwhile is left alone)."""
    if not updates:
        return
    conn.execute(text("""
        UPDATE webhook_messages m
           SET status = u.status, attempts = u.attempts, next_attempt_at = u.next_attempt_at,
               lease_owner = NULL, lease_until = NULL, updated_at = :now
          FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]),
                      CAST(:attempts AS integer[]), CAST(:nexts AS timestamptz[]))
               AS u(id, status, attempts, next_attempt_at)
         WHERE m.id = u.id AND m.status = 'sending' AND m.lease_owner = :owner"""),
        {"ids": [u["id"] for u in updates], "statuses": [u["status"] for u in updates],
         "attempts": [u["attempts"] for u in updates],
         "nexts": [u["next_attempt_at"] for u in updates], "owner": owner, "now": now})


# --- the sweeper ------------------------------------------------------------------------------

def lock_owner(conn: Connection, owner: int) -> bool:
    """Take the owner's session lock (held while the dispatcher lives); False if taken."""
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:c, :o)"),
                             {"c": LOCK_CLASS, "o": owner}).scalar_one())


def unlock_owner(conn: Connection, owner: int) -> None:
    conn.execute(text("SELECT pg_advisory_unlock(:c, :o)"), {"c": LOCK_CLASS, "o": owner})


def holds_owner(conn: Connection, owner: int) -> bool:
    """Whether this session still holds the owner's lock."""
    return bool(conn.execute(text("""
        SELECT EXISTS (SELECT 1 FROM pg_locks
                        WHERE locktype = 'advisory' AND classid = :c AND objid = :o
                          AND objsubid = 2 AND pid = pg_backend_pid() AND granted)"""),
        {"c": LOCK_CLASS, "o": owner}).scalar_one())


def sending_owners(conn: Connection) -> list[int]:
    return list(conn.execute(text("""SELECT DISTINCT lease_owner FROM webhook_messages
                                      WHERE status = 'sending'""")).scalars())


def redrive(conn: Connection, now: datetime, *, owner: int | None = None) -> int:
    """Sending messages back to pending, due now: the owner's (it died), or (no owner given)
    those whose lease expired."""
    condition = "lease_owner = :owner" if owner is not None else "lease_until < :now"
    return conn.execute(text(f"""
        UPDATE webhook_messages SET status = 'pending', next_attempt_at = :now,
               lease_owner = NULL, lease_until = NULL, updated_at = :now
         WHERE status = 'sending' AND {condition}"""), {"now": now, "owner": owner}).rowcount


def fail_pending_of_unusable_endpoints(conn: Connection, now: datetime) -> int:
    """Pending messages of endpoints disabled or deleted after the message was made."""
    return conn.execute(text("""
        UPDATE webhook_messages m SET status = 'failed', next_attempt_at = NULL, updated_at = :now
          FROM webhook_endpoints p
         WHERE p.id = m.endpoint_id AND p.status <> 'enabled' AND m.status = 'pending'"""),
        {"now": now}).rowcount


# --- reads for the API and the CLI ------------------------------------------------------------

def get_event(conn: Connection, event_id: str, *,
              partner_id: str | None = None) -> RowMapping | None:
    sql = "SELECT * FROM webhook_events WHERE id = :id" + _partner_clause(partner_id)
    return conn.execute(text(sql), {"id": event_id,
                                    "partner_id": partner_id}).mappings().one_or_none()


def list_events(conn: Connection, *, partner_id: str | None, limit: int,
                before_seq: int | None = None,
                event_type: str | None = None) -> list[RowMapping]:
    """Newest first; `before_seq` continues a page."""
    sql = "SELECT * FROM webhook_events WHERE true" + _partner_clause(partner_id)
    if before_seq is not None:
        sql += " AND seq < :before"
    if event_type is not None:
        sql += " AND event_type = :event_type"
    sql += " ORDER BY seq DESC LIMIT :n"
    return list(conn.execute(text(sql), {"partner_id": partner_id, "before": before_seq,
                                         "event_type": event_type, "n": limit}).mappings())


def attempts(conn: Connection, *, partner_id: str | None, event_id: str | None = None,
             endpoint_id: str | None = None, limit: int = 100,
             before_id: int | None = None) -> list[RowMapping]:
    """Attempts of an event or of an endpoint, newest first."""
    sql = "SELECT * FROM webhook_attempts WHERE true" + _partner_clause(partner_id)
    if event_id is not None:
        sql += " AND event_id = :event_id"
    if endpoint_id is not None:
        sql += " AND endpoint_id = :endpoint_id"
    if before_id is not None:
        sql += " AND id < :before"
    sql += " ORDER BY id DESC LIMIT :n"
    return list(conn.execute(text(sql), {"partner_id": partner_id, "event_id": event_id,
                                         "endpoint_id": endpoint_id, "before": before_id,
                                         "n": limit}).mappings())


def messages_of_event(conn: Connection, event_id: str) -> list[RowMapping]:
    return list(conn.execute(text("""SELECT * FROM webhook_messages WHERE event_id = :id
                                      ORDER BY id"""), {"id": event_id}).mappings())
