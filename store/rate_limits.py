"""The rate_limit_buckets table: take a token from a bucket in one statement. SQL only.

A bucket is refilled and taken from in ONE upsert, under its row lock, so any number of API
processes share it without racing: the first request of a bucket inserts it full (less the
token it takes); every later one refills it by the time since its last request (never above
the capacity) and takes a token if there is one. The arithmetic is
`domain.rate_limits.take`'s. Times are the database's clock (`clock_timestamp()`), one clock
for every process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text

from domain.rate_limits import Decision, RateLimit
from store.idempotency import Record, fetch_one, record_of

_REFILLED = ("least(EXCLUDED.capacity, b.tokens + greatest(0, extract(epoch FROM "
             "EXCLUDED.updated_at - b.updated_at)) * EXCLUDED.rate)")

_TAKE = text(f"""
    INSERT INTO rate_limit_buckets AS b (bucket, capacity, rate, tokens, allowed, updated_at)
    VALUES (:bucket, :capacity, :rate, :capacity - 1, true, clock_timestamp())
    ON CONFLICT (bucket) DO UPDATE SET
        capacity = EXCLUDED.capacity, rate = EXCLUDED.rate,
        tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
        allowed = {_REFILLED} >= 1,
        updated_at = EXCLUDED.updated_at
    RETURNING tokens, allowed""")


def take(conn: Connection, bucket: str, limit: RateLimit) -> Decision:
    """One request against `bucket` under `limit`: allowed (a token taken) or not."""
    row = conn.execute(_TAKE, {"bucket": bucket, "capacity": float(limit.requests),
                               "rate": limit.per_second}).one()
    return Decision(bool(row.allowed), limit, float(row.tokens))


# The take for a key the API process authenticated before (api/rate_limits.py): one statement
# that finds the key's row by id, live and unchanged (the version read when it authenticated:
# revoked, expired or edited since, the row does not match, no token is taken and no row comes
# back), takes the token from the key's bucket exactly as _TAKE does, and, for a request with an
# Idempotency-Key, reads that key's record (store/idempotency.py `find`'s columns).
_KNOWN_KEY = f"""
    WITH k AS (
        SELECT id FROM api_keys
        WHERE id = %(key_id)s AND xmin = %(version)s::xid AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())),
    t AS (
        INSERT INTO rate_limit_buckets AS b (bucket, capacity, rate, tokens, allowed, updated_at)
        SELECT k.id, %(capacity)s, %(rate)s, %(capacity)s - 1, true, clock_timestamp() FROM k
        ON CONFLICT (bucket) DO UPDATE SET
            capacity = EXCLUDED.capacity, rate = EXCLUDED.rate,
            tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
            allowed = {_REFILLED} >= 1,
            updated_at = EXCLUDED.updated_at
        RETURNING tokens, allowed)
    """
_TAKE_KNOWN = _KNOWN_KEY + "SELECT t.tokens, t.allowed FROM t"
_TAKE_KNOWN_WITH_RECORD = _KNOWN_KEY + """
    SELECT t.tokens, t.allowed, r.request_hash, r.response_status, r.response_headers,
           r.response_body, r.locked_at < now() - make_interval(secs => %(stale_after)s) AS stale,
           r.idempotency_key IS NOT NULL AS seen
    FROM t LEFT JOIN idempotency_records r
        ON r.api_key_id = %(key_id)s AND r.idempotency_key = %(key)s"""


def take_known(engine: Engine, key_id: str, version: str, limit: RateLimit, *,
               idempotency_key: str | None = None,
               stale_after: float = 60.0) -> tuple[Decision, Record | None] | None:
    """The key bucket's decision for the key `key_id` whose row is still at `version`, live
    (and the record of its `idempotency_key`, None when there is none or no key was given);
    None when the row is not that any more (nothing taken: authenticate the key again).
    One prepared statement in autocommit, on the driver's connection (store.idempotency)."""
    params: dict[str, Any] = {"key_id": key_id, "version": version,
                              "capacity": float(limit.requests), "rate": limit.per_second}
    if idempotency_key is None:
        row = fetch_one(engine, _TAKE_KNOWN, params)
    else:
        params.update(key=idempotency_key, stale_after=stale_after)
        row = fetch_one(engine, _TAKE_KNOWN_WITH_RECORD, params)
    if row is None:
        return None
    record = record_of(row) if idempotency_key is not None and row.seen else None
    return Decision(bool(row.allowed), limit, float(row.tokens)), record


def reset(conn: Connection, bucket: str) -> None:
    """Forget a bucket (it starts full again)."""
    conn.execute(text("DELETE FROM rate_limit_buckets WHERE bucket = :bucket"),
                 {"bucket": bucket})
