"""API keys: made, stored hashed, found again by their public prefix.

A key is a high-entropy secret: `sp_`, a random public part, then 256 random bits. The database keeps its SHA-256 and
its first `PREFIX_LENGTH` characters (the public prefix, unique and indexed): a lookup is one
index probe on the prefix followed by a constant-time comparison of the hashes. A fast hash is
right here, unlike for passwords: the secret is random, not guessable, so slowing down a
brute-force attempt buys nothing.

This module must never store, log or return a plaintext key except the one time
`create_api_key` hands it to the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, text

import audit
from api.scopes import OPERATOR_DEFAULT, PARTNER_DEFAULT, unknown

PREFIX_LENGTH = 16
MIN_KEY_LENGTH = 32
ROLES = ("partner", "operator")


@dataclass(frozen=True)
class ApiKey:
    id: str
    prefix: str
    role: str                  # "partner" | "operator"
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


def _check(role: str, partner_id: str | None, scopes: Iterable[str] | None, name: str) -> frozenset[str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if (role == "partner") != bool(partner_id):
        raise ValueError("a partner key needs a partner_id; an operator key must not have one")
    if not name or not name.strip():
        raise ValueError("an API key needs a name")
    chosen = frozenset(str(s) for s in scopes) if scopes is not None else (
        PARTNER_DEFAULT if role == "partner" else OPERATOR_DEFAULT)
    if bad := unknown(chosen):
        raise ValueError(f"unknown scopes: {', '.join(bad)}")
    return chosen


def _insert(conn: Connection, plaintext: str, role: str, partner_id: str | None,
            scopes: frozenset[str], name: str, actor: str) -> str | None:
    """Insert the key unless its prefix exists; returns the new id or None."""
    key_id = "key_" + uuid.uuid4().hex[:20]
    inserted = conn.execute(
        text("""INSERT INTO api_keys (id, prefix, key_hash, role, partner_id, scopes, name)
                VALUES (:id, :prefix, :hash, :role, :partner_id, :scopes, :name)
                ON CONFLICT (prefix) DO NOTHING RETURNING id"""),
        {"id": key_id, "prefix": key_prefix(plaintext), "hash": key_hash(plaintext), "role": role,
         "partner_id": partner_id, "scopes": sorted(scopes), "name": name},
    ).scalar_one_or_none()
    if inserted is None:
        return None
    audit.record(conn, actor=actor, action="api_key.created", subject_type="api_key",
                 subject_id=key_id, before=None,
                 after={"id": key_id, "prefix": key_prefix(plaintext), "role": role,
                        "partner_id": partner_id, "scopes": sorted(scopes), "name": name})
    return key_id


def create_api_key(conn: Connection, role: str, partner_id: str | None,
                   scopes: Iterable[str] | None, name: str, *,
                   actor: str = "system:api_keys") -> tuple[str, str]:
    """Make a new key; returns (id, plaintext). The plaintext cannot be recovered later."""
    chosen = _check(role, partner_id, scopes, name)
    while True:  # a prefix collision (78 random bits) is all but impossible; draw again if so
        # The public prefix has randomness of its own, so the secret after it keeps 256 bits.
        plaintext = "sp_" + secrets.token_urlsafe(12)[:PREFIX_LENGTH - 3] + secrets.token_urlsafe(32)
        key_id = _insert(conn, plaintext, role, partner_id, chosen, name, actor)
        if key_id is not None:
            return key_id, plaintext


def ensure_api_key(conn: Connection, plaintext: str, role: str, partner_id: str | None,
                   scopes: Iterable[str] | None, name: str, *,
                   actor: str = "system:api_keys") -> str:
    """Store a key whose plaintext the caller chose (the dev stack's printed key); returns its id.

    Running it again with the same plaintext returns the existing key's id and changes nothing.
    A different key that shares the prefix is refused (ValueError): prefixes must stay unique.
    """
    chosen = _check(role, partner_id, scopes, name)
    if len(plaintext) < MIN_KEY_LENGTH:
        raise ValueError(f"an API key must have at least {MIN_KEY_LENGTH} characters")
    key_id = _insert(conn, plaintext, role, partner_id, chosen, name, actor)
    if key_id is not None:
        return key_id
    row = conn.execute(text("SELECT id, key_hash FROM api_keys WHERE prefix = :prefix"),
                       {"prefix": key_prefix(plaintext)}).one()
    if not matches(row.key_hash, plaintext):
        raise ValueError(f"another API key already uses the prefix {key_prefix(plaintext)!r}")
    return row.id


def from_row(row) -> ApiKey:
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


def revoke(conn: Connection, key_id: str, *, actor: str) -> bool:
    """Revoke a key from now on; returns False when it was unknown or already revoked."""
    done = conn.execute(
        text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id"),
        {"id": key_id},
    ).scalar_one_or_none()
    if done is not None:
        audit.record(conn, actor=actor, action="api_key.revoked", subject_type="api_key",
                     subject_id=key_id, before={"revoked": False}, after={"revoked": True})
    return done is not None
