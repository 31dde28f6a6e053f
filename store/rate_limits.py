"""The rate_limit_buckets table: take a token from a bucket in one statement. SQL only.

A bucket is refilled and taken from in ONE upsert, under its row lock, so any number of API
processes share it without racing: the first request of a bucket inserts it full (less the
token it takes); every later one refills it by the time since its last request (never above
the capacity) and takes a token if there is one. The arithmetic is
`domain.rate_limits.take`'s. Times are the database's clock (`clock_timestamp()`), one clock
for every process.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from domain.rate_limits import Decision, RateLimit

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


def reset(conn: Connection, bucket: str) -> None:
    """Forget a bucket (it starts full again)."""
    conn.execute(text("DELETE FROM rate_limit_buckets WHERE bucket = :bucket"),
                 {"bucket": bucket})
