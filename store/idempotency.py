"""Idempotency records of POST requests: claim, complete, release or forget, look up.

The HTTP side (api/idempotency.py) owns the rules; this module only speaks SQL. Each function
is one statement, run in autocommit (its own transaction): a claim must be visible to
concurrent duplicates at once, so it is never part of the business transaction.

`lookup` answers the two questions of every request carrying an Idempotency-Key (who is the
API key, and has this key been seen) in ONE indexed round trip, because that is the whole of
the replay path; `find` answers the second alone (the primary key) when the key is already
authenticated (by the rate limiter, on the same request).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, text

_LOOKUP_SQL = """
    SELECT k.id, k.prefix, k.key_hash, k.role, k.partner_id, k.scopes, k.name, k.revoked_at,
           k.rate_limits, (k.expires_at IS NOT NULL AND k.expires_at <= now()) AS expired,
           r.request_hash, r.response_status, r.response_headers, r.response_body,
           r.locked_at < now() - make_interval(secs => %(stale_after)s) AS stale,
           r.idempotency_key IS NOT NULL AS seen
    FROM api_keys k
    LEFT JOIN idempotency_records r ON r.api_key_id = k.id AND r.idempotency_key = %(key)s
    WHERE k.prefix = %(prefix)s"""

_FIND_SQL = """
    SELECT request_hash, response_status, response_headers, response_body,
           locked_at < now() - make_interval(secs => %(stale_after)s) AS stale
    FROM idempotency_records WHERE api_key_id = %(api_key_id)s AND idempotency_key = %(key)s"""

_CLAIM = text("""
    INSERT INTO idempotency_records (api_key_id, idempotency_key, request_method, request_path,
                                     request_hash, claim_token)
    VALUES (:api_key_id, :key, :method, :path, :hash, :token)
    ON CONFLICT DO NOTHING RETURNING claim_token""")

_READ = text("""
    SELECT request_hash, response_status, response_headers, response_body,
           locked_at < now() - make_interval(secs => :stale_after) AS stale
    FROM idempotency_records WHERE api_key_id = :api_key_id AND idempotency_key = :key""")

# A first attempt that has held the key longer than `stale_after` is presumed dead (process
# killed between the business commit and storing its answer): a retry may run the request again.
_TAKE_OVER = text("""
    UPDATE idempotency_records SET claim_token = :token, locked_at = now()
    WHERE api_key_id = :api_key_id AND idempotency_key = :key AND request_hash = :hash
      AND response_status IS NULL AND locked_at < now() - make_interval(secs => :stale_after)
    RETURNING claim_token""")

_COMPLETE = text("""
    UPDATE idempotency_records
    SET response_status = :status, response_headers = CAST(:headers AS jsonb),
        response_body = :body, completed_at = now()
    WHERE api_key_id = :api_key_id AND idempotency_key = :key AND claim_token = :token
      AND response_status IS NULL
    RETURNING 1""")

# A released claim keeps its record, and so its request hash: the key stays bound to that
# request. `locked_at = -infinity` marks it free: it reads as stale at once, so the same request
# takes it over (and runs again) while a different one is refused.
_RELEASE = text("""
    UPDATE idempotency_records SET locked_at = '-infinity'
    WHERE api_key_id = :api_key_id AND idempotency_key = :key AND claim_token = :token
      AND response_status IS NULL""")

_FORGET = text("""
    DELETE FROM idempotency_records
    WHERE api_key_id = :api_key_id AND idempotency_key = :key AND claim_token = :token
      AND response_status IS NULL""")


@dataclass(frozen=True)
class Record:
    request_hash: bytes
    status: int | None              # None: the first request has not finished
    headers: list[list[str]] | None
    body: bytes | None
    stale: bool                     # unfinished for longer than the caller's stale_after

    @property
    def completed(self) -> bool:
        return self.status is not None


def record_of(row: Any) -> Record:
    return Record(request_hash=bytes(row.request_hash), status=row.response_status,
                  headers=row.response_headers,
                  body=None if row.response_body is None else bytes(row.response_body),
                  stale=bool(row.stale))


def lookup(engine: Engine, prefix: str, key: str,
           stale_after: float) -> tuple[Any, Record | None]:
    """(api key row, Record | None) for an API key prefix and an Idempotency-Key.

    The row is None when no key has that prefix; the caller still checks the key's hash.
    This is the whole replay path, so it runs as one prepared statement on the driver's own
    connection (autocommit: no BEGIN/ROLLBACK): SQLAlchemy's layers would cost more CPU than
    the statement itself.
    """
    row = fetch_one(engine, _LOOKUP_SQL,
                     {"prefix": prefix, "key": key, "stale_after": stale_after})
    if row is None:
        return None, None
    return row, (record_of(row) if row.seen else None)


def find(engine: Engine, api_key_id: str, key: str, stale_after: float) -> Record | None:
    """The record of (API key id, Idempotency-Key), or None: one primary-key lookup, run like
    `lookup` (prepared, autocommit, on the driver's connection)."""
    row = fetch_one(engine, _FIND_SQL,
                     {"api_key_id": api_key_id, "key": key, "stale_after": stale_after})
    return None if row is None else record_of(row)


def fetch_one(engine: Engine, sql: str, params: dict[str, Any]) -> Any:
    """One prepared statement in autocommit on a pooled connection's driver connection: the
    replay path's whole database work, without SQLAlchemy's per-statement layers (also the
    rate limiter's take for a key it knows, store/rate_limits.py `take_known`)."""
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        driver.autocommit = True
        try:
            with driver.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(sql, params, prepare=True)
                return cursor.fetchone()
        finally:
            driver.autocommit = False
    finally:
        pooled.close()   # back to the pool


# claim and complete as the request path runs them (prepared, autocommit, on the driver's
# connection, as `find`): the same statements as _CLAIM and _COMPLETE.
_CLAIM_SQL = """
    INSERT INTO idempotency_records (api_key_id, idempotency_key, request_method, request_path,
                                     request_hash, claim_token)
    VALUES (%(api_key_id)s, %(key)s, %(method)s, %(path)s, %(hash)s, %(token)s)
    ON CONFLICT DO NOTHING RETURNING claim_token"""

_COMPLETE_SQL = """
    UPDATE idempotency_records
    SET response_status = %(status)s, response_headers = CAST(%(headers)s AS jsonb),
        response_body = %(body)s, completed_at = now()
    WHERE api_key_id = %(api_key_id)s AND idempotency_key = %(key)s AND claim_token = %(token)s
      AND response_status IS NULL
    RETURNING 1"""


def claim_now(engine: Engine, api_key_id: str, key: str, method: str, path: str,
              request_hash: bytes, token: uuid.UUID) -> bool:
    """`claim` in its own transaction, run like `find`."""
    return fetch_one(engine, _CLAIM_SQL, {"api_key_id": api_key_id, "key": key, "method": method,
                                          "path": path, "hash": request_hash,
                                          "token": token}) is not None


def complete_now(engine: Engine, api_key_id: str, key: str, token: uuid.UUID, status: int,
                 headers: list[list[str]], body: bytes) -> bool:
    """`complete` in its own transaction, run like `find`."""
    return fetch_one(engine, _COMPLETE_SQL, {"api_key_id": api_key_id, "key": key,
                                             "token": token, "status": status,
                                             "headers": json.dumps(headers),
                                             "body": body}) is not None


def read(conn: Connection, api_key_id: str, key: str, stale_after: float) -> Record | None:
    row = conn.execute(_READ, {"api_key_id": api_key_id, "key": key,
                               "stale_after": stale_after}).one_or_none()
    return None if row is None else record_of(row)


def claim(conn: Connection, api_key_id: str, key: str, method: str, path: str,
          request_hash: bytes, token: uuid.UUID) -> bool:
    """Become the one request that runs for this key; False when another got there first.

    The caller makes the token, so that it can release a claim whose answer it never saw.
    """
    return conn.execute(_CLAIM, {"api_key_id": api_key_id, "key": key, "method": method,
                                 "path": path, "hash": request_hash,
                                 "token": token}).first() is not None


def take_over(conn: Connection, api_key_id: str, key: str, request_hash: bytes,
              stale_after: float, token: uuid.UUID) -> bool:
    """Claim a key whose first attempt has been unfinished for longer than `stale_after`."""
    return conn.execute(_TAKE_OVER, {"api_key_id": api_key_id, "key": key, "hash": request_hash,
                                     "stale_after": stale_after,
                                     "token": token}).first() is not None


def complete(conn: Connection, api_key_id: str, key: str, token: uuid.UUID, status: int,
             headers: list[list[str]], body: bytes) -> bool:
    """Store the answer to replay; False when the claim was lost (taken over as stale)."""
    return conn.execute(_COMPLETE, {"api_key_id": api_key_id, "key": key, "token": token,
                                    "status": status, "headers": json.dumps(headers),
                                    "body": body}).first() is not None


def release(conn: Connection, api_key_id: str, key: str, token: uuid.UUID) -> None:
    """Free an unfinished claim whose request may have had effects (it failed): a retry of the
    same request may run it again at once; the key stays bound to that request."""
    conn.execute(_RELEASE, {"api_key_id": api_key_id, "key": key, "token": token})


def forget(conn: Connection, api_key_id: str, key: str, token: uuid.UUID) -> None:
    """Delete an unfinished claim whose request had no effect (refused before it ran): the key
    is free again, for any request."""
    conn.execute(_FORGET, {"api_key_id": api_key_id, "key": key, "token": token})


def prune(conn: Connection, older_than: timedelta) -> int:
    """Delete finished and released records older than `older_than` (Stripe keeps keys for 24
    hours). A claim still held is kept: its request may be running."""
    return conn.execute(
        text("""DELETE FROM idempotency_records
                WHERE created_at < now() - :age
                  AND (response_status IS NOT NULL OR locked_at = '-infinity')"""),
        {"age": older_than}).rowcount
