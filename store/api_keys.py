"""The api_keys table: insert a key (hashed), find it by its public prefix, revoke it. SQL only.

A key is a high-entropy secret: `sp_`, a random public part, then 256 random bits. The database
keeps its SHA-256 and its first `PREFIX_LENGTH` characters (the public prefix, unique and
indexed): a lookup is one index probe on the prefix followed by a constant-time comparison of
the hashes. A fast hash is right here, unlike for passwords: the secret is random, not
guessable, so slowing down a brute-force attempt buys nothing.

Making and revoking keys (with their audit records) is `commands.api_keys`.
Must never: store, log or return a plaintext key; write audit records.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import Connection, Row, text

PREFIX_LENGTH = 16
MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class ApiKey:
    id: str
    prefix: str
    role: str                  # domain.scopes.Role: "partner" | "operator"
    partner_id: str | None     # set exactly for partner keys
    scopes: frozenset[str]
    name: str
    revoked: bool = False


def key_prefix(plaintext: str) -> str:
    return plaintext[:PREFIX_LENGTH]


def key_hash(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode("utf-8")).digest()


def matches(stored_hash: bytes, plaintext: str) -> bool:
    """Constant-time: the comparison's duration says nothing about how much of a key was right."""
    return hmac.compare_digest(bytes(stored_hash), key_hash(plaintext))


def insert(conn: Connection, *, key_id: str, plaintext: str, role: str, partner_id: str | None,
           scopes: frozenset[str], name: str) -> bool:
    """Insert the key unless its prefix exists; True when inserted."""
    inserted = conn.execute(
        text("""INSERT INTO api_keys (id, prefix, key_hash, role, partner_id, scopes, name)
                VALUES (:id, :prefix, :hash, :role, :partner_id, :scopes, :name)
                ON CONFLICT (prefix) DO NOTHING RETURNING id"""),
        {"id": key_id, "prefix": key_prefix(plaintext), "hash": key_hash(plaintext), "role": role,
         "partner_id": partner_id, "scopes": sorted(scopes), "name": name},
    ).scalar_one_or_none()
    return inserted is not None


def id_if_same_key(conn: Connection, plaintext: str) -> str | None:
    """The id of the stored key with this plaintext's prefix when its secret matches too;
    None when another key holds the prefix. (The prefix must be taken: call after `insert`.)"""
    row = conn.execute(text("SELECT id, key_hash FROM api_keys WHERE prefix = :prefix"),
                       {"prefix": key_prefix(plaintext)}).one()
    return row.id if matches(row.key_hash, plaintext) else None


def from_row(row: Row) -> ApiKey:
    return ApiKey(id=row.id, prefix=row.prefix, role=row.role, partner_id=row.partner_id,
                  scopes=frozenset(row.scopes), name=row.name, revoked=row.revoked_at is not None)


def authenticate(conn: Connection, plaintext: str) -> ApiKey | None:
    """The live key with this plaintext, or None (unknown, wrong secret, or revoked)."""
    if len(plaintext) < MIN_KEY_LENGTH:
        return None
    row = conn.execute(
        text("""SELECT id, prefix, key_hash, role, partner_id, scopes, name, revoked_at
                FROM api_keys WHERE prefix = :prefix"""),
        {"prefix": key_prefix(plaintext)},
    ).one_or_none()
    if row is None or row.revoked_at is not None or not matches(row.key_hash, plaintext):
        return None
    return from_row(row)


def revoke(conn: Connection, key_id: str) -> bool:
    """Mark a key revoked from now on; False when it was unknown or already revoked."""
    done = conn.execute(
        text("""UPDATE api_keys SET revoked_at = now()
                WHERE id = :id AND revoked_at IS NULL RETURNING id"""),
        {"id": key_id},
    ).scalar_one_or_none()
    return done is not None
