"""The api_keys table: insert a key (hashed), find it by its public prefix, revoke it. SQL only.

A key is a high-entropy secret: `sp_`, a random public part, then 256 random bits. The database
keeps its SHA-256 and its first `PREFIX_LENGTH` characters (the public prefix, unique and
indexed): a lookup is one index probe on the prefix followed by a constant-time comparison of
the hashes. A fast hash is right here, unlike for passwords: the secret is random, not
guessable, so slowing down a brute-force attempt buys nothing.

A key is live until it is revoked or its `expires_at` (set when it is rolled) has passed.
`last_used_at` is recorded by `touch`, which the API calls at most once a minute per key and
process (a write per request would cost more than the request).

Making, rolling and revoking keys (with their audit records) is `commands.api_keys`.
Must never: store, log or return a plaintext key; write audit records.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, RowMapping, text

from store.pagination import Listing

PREFIX_LENGTH = 16
MIN_KEY_LENGTH = 32

COLUMNS = ("id, prefix, role, partner_id, scopes, name, created_at, revoked_at, expires_at, "
           "last_used_at, rate_limits, created_by, rolled_from, api_version, "
           "(expires_at IS NOT NULL AND expires_at <= now()) AS expired")
# GET /v1/api_keys pages (store/pagination.py), newest first, on the api_keys_list* indexes.
LISTING = Listing("api_keys", COLUMNS)


@dataclass(frozen=True)
class ApiKey:
    id: str
    prefix: str
    role: str                  # domain.scopes.Role: "partner" | "operator"
    partner_id: str | None     # set exactly for partner keys
    scopes: frozenset[str]
    name: str
    revoked: bool = False
    expired: bool = False
    # {"*" | scope: {"requests": n, "window_seconds": s}} (domain/rate_limits.py)
    rate_limits: Mapping[str, Any] = field(default_factory=dict)
    # The API version its requests are served under without a Settlepay-Version header.
    api_version: str | None = None

    @property
    def live(self) -> bool:
        return not (self.revoked or self.expired)


def key_prefix(plaintext: str) -> str:
    return plaintext[:PREFIX_LENGTH]


def key_hash(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode("utf-8")).digest()


def matches(stored_hash: bytes, plaintext: str) -> bool:
    """Constant-time: the comparison's duration says nothing about how much of a key was right."""
    return hmac.compare_digest(bytes(stored_hash), key_hash(plaintext))


def insert(conn: Connection, *, key_id: str, plaintext: str, role: str, partner_id: str | None,
           scopes: frozenset[str], name: str, rate_limits: Mapping[str, Any] | None = None,
           api_version: str, created_by: str | None = None, rolled_from: str | None = None,
           expires_at: datetime | None = None) -> bool:
    """Insert the key unless its prefix exists; True when inserted."""
    inserted = conn.execute(
        text("""INSERT INTO api_keys (id, prefix, key_hash, role, partner_id, scopes, name,
                                      rate_limits, api_version, created_by, rolled_from,
                                      expires_at)
                VALUES (:id, :prefix, :hash, :role, :partner_id, :scopes, :name,
                        CAST(:rate_limits AS jsonb), :api_version, :created_by, :rolled_from,
                        :expires_at)
                ON CONFLICT (prefix) DO NOTHING RETURNING id"""),
        {"id": key_id, "prefix": key_prefix(plaintext), "hash": key_hash(plaintext), "role": role,
         "partner_id": partner_id, "scopes": sorted(scopes), "name": name,
         "rate_limits": json.dumps(dict(rate_limits or {}), sort_keys=True),
         "api_version": api_version, "created_by": created_by, "rolled_from": rolled_from,
         "expires_at": expires_at},
    ).scalar_one_or_none()
    return inserted is not None


def id_if_same_key(conn: Connection, plaintext: str) -> str | None:
    """The id of the stored key with this plaintext's prefix when its secret matches too;
    None when another key holds the prefix. (The prefix must be taken: call after `insert`.)"""
    row = conn.execute(text("SELECT id, key_hash FROM api_keys WHERE prefix = :prefix"),
                       {"prefix": key_prefix(plaintext)}).one()
    return row.id if matches(row.key_hash, plaintext) else None


def from_row(row: Row | RowMapping) -> ApiKey:
    """An ApiKey of a row with the key's columns (and `expired`, see COLUMNS)."""
    if isinstance(row, Mapping):
        values = row
    else:   # a SQLAlchemy Row, or a driver's named tuple (store/idempotency.py's lookup)
        values = row._mapping if hasattr(row, "_mapping") else row._asdict()
    return ApiKey(id=values["id"], prefix=values["prefix"], role=values["role"],
                  partner_id=values["partner_id"], scopes=frozenset(values["scopes"]),
                  name=values["name"], revoked=values["revoked_at"] is not None,
                  expired=bool(values["expired"]), rate_limits=dict(values["rate_limits"] or {}),
                  api_version=values.get("api_version"))


# The row's version (its xmin): any change to the row (revoked, expired, its scopes or limits
# changed by an operator, its last use recorded) gives it another one.
_AUTHENTICATE = text(f"SELECT key_hash, xmin::text AS row_version, {COLUMNS} FROM api_keys "
                     "WHERE prefix = :prefix")


def authenticate(conn: Connection, plaintext: str) -> ApiKey | None:
    """The live key with this plaintext, or None (unknown, wrong secret, revoked or expired)."""
    found = authenticate_versioned(conn, plaintext)
    return None if found is None else found[0]


def authenticate_versioned(conn: Connection, plaintext: str) -> tuple[ApiKey, str] | None:
    """`authenticate`, with the version of the key's row as it was read (its xmin, as text):
    a statement that finds the row by id with that version sees the row unchanged since."""
    if len(plaintext) < MIN_KEY_LENGTH:
        return None
    row = conn.execute(_AUTHENTICATE, {"prefix": key_prefix(plaintext)}).mappings().one_or_none()
    if row is None or not matches(row["key_hash"], plaintext):
        return None
    key = from_row(row)
    return (key, row["row_version"]) if key.live else None


def get(conn: Connection, key_id: str, *, partner_id: str | None = None,
        for_update: bool = False) -> RowMapping | None:
    """The key's row (never its hash), or None. With `partner_id`, only that partner's key."""
    sql = f"SELECT {COLUMNS} FROM api_keys WHERE id = :id"
    if partner_id is not None:
        sql += " AND partner_id = :partner_id"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql), {"id": key_id, "partner_id": partner_id}).mappings() \
        .one_or_none()


def revoke(conn: Connection, key_id: str) -> bool:
    """Mark a key revoked from now on; False when it was unknown or already revoked."""
    done = conn.execute(
        text("""UPDATE api_keys SET revoked_at = now()
                WHERE id = :id AND revoked_at IS NULL RETURNING id"""),
        {"id": key_id},
    ).scalar_one_or_none()
    return done is not None


def expire(conn: Connection, key_id: str, after_seconds: float) -> RowMapping | None:
    """The key stops authenticating `after_seconds` from now (or at its earlier expiry); its
    row after, or None when it is unknown."""
    return conn.execute(
        text(f"""UPDATE api_keys
                 SET expires_at = least(coalesce(expires_at, 'infinity'),
                                        now() + make_interval(secs => :seconds))
                 WHERE id = :id RETURNING {COLUMNS}"""),
        {"id": key_id, "seconds": after_seconds}).mappings().one_or_none()


def touch(conn: Connection, key_id: str) -> None:
    """Record that the key was used now."""
    conn.execute(text("""UPDATE api_keys SET last_used_at = now()
                         WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now())"""),
                 {"id": key_id})


def as_record(row: RowMapping) -> dict[str, Any]:
    """The row as plain JSON-able values (audit before/after): never a hash or a secret."""
    return {key: (value.isoformat() if hasattr(value, "isoformat")
                  else sorted(value) if isinstance(value, list) else value)
            for key, value in row.items() if key not in ("expired", "last_used_at")}
