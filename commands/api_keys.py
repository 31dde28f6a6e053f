"""API keys: make one (its audit record with it), store a chosen one, revoke one.

The plaintext of a new key is handed to the caller once (`create_api_key`) and can never be
recovered: the store keeps its hash (see `store.api_keys`). The audit records name the key by
id and prefix, never by its secret.
Must never: log or audit a plaintext key; open its own transaction.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable

from sqlalchemy import Connection

import audit
from domain.scopes import Role, default_scopes, unknown
from store import api_keys as store
from store.api_keys import MIN_KEY_LENGTH, PREFIX_LENGTH, key_prefix

SYSTEM_ACTOR = "system:api_keys"


def _definition(role: str, partner_id: str | None, scopes: Iterable[str] | None,
                name: str) -> frozenset[str]:
    """The key's scopes, once its definition is known to be sound (ValueError otherwise)."""
    if role not in tuple(Role):
        raise ValueError(f"role must be one of {tuple(str(r) for r in Role)}, not {role!r}")
    if (role == Role.PARTNER) != bool(partner_id):
        raise ValueError("a partner key needs a partner_id; an operator key must not have one")
    if not name or not name.strip():
        raise ValueError("an API key needs a name")
    chosen = frozenset(str(s) for s in scopes) if scopes is not None else default_scopes(role)
    if bad := unknown(chosen):
        raise ValueError(f"unknown scopes: {', '.join(bad)}")
    return chosen


def _insert(conn: Connection, plaintext: str, role: str, partner_id: str | None,
            scopes: frozenset[str], name: str, actor: str) -> str | None:
    """Insert and audit the key unless its prefix exists; returns the new id or None."""
    key_id = "key_" + uuid.uuid4().hex[:20]
    if not store.insert(conn, key_id=key_id, plaintext=plaintext, role=role,
                        partner_id=partner_id, scopes=scopes, name=name):
        return None
    audit.record(conn, actor=actor, action="api_key.created", subject_type="api_key",
                 subject_id=key_id, before=None,
                 after={"id": key_id, "prefix": key_prefix(plaintext), "role": role,
                        "partner_id": partner_id, "scopes": sorted(scopes), "name": name})
    return key_id


def create_api_key(conn: Connection, role: str, partner_id: str | None,
                   scopes: Iterable[str] | None, name: str, *,
                   actor: str = SYSTEM_ACTOR) -> tuple[str, str]:
    """Make a new key; returns (id, plaintext). The plaintext cannot be recovered later."""
    chosen = _definition(role, partner_id, scopes, name)
    while True:  # a prefix collision (78 random bits) is all but impossible; draw again if so
        # The public prefix has randomness of its own, so the secret after it keeps 256 bits.
        plaintext = ("sp_" + secrets.token_urlsafe(12)[:PREFIX_LENGTH - 3]
                     + secrets.token_urlsafe(32))
        key_id = _insert(conn, plaintext, role, partner_id, chosen, name, actor)
        if key_id is not None:
            return key_id, plaintext


def ensure_api_key(conn: Connection, plaintext: str, role: str, partner_id: str | None,
                   scopes: Iterable[str] | None, name: str, *,
                   actor: str = SYSTEM_ACTOR) -> str:
    """Store a key whose plaintext the caller chose (the dev stack's printed key); returns its id.

    Running it again with the same plaintext returns the existing key's id and changes nothing.
    A different key that shares the prefix is refused (ValueError): prefixes must stay unique.
    """
    chosen = _definition(role, partner_id, scopes, name)
    if len(plaintext) < MIN_KEY_LENGTH:
        raise ValueError(f"an API key must have at least {MIN_KEY_LENGTH} characters")
    key_id = _insert(conn, plaintext, role, partner_id, chosen, name, actor)
    if key_id is not None:
        return key_id
    existing = store.id_if_same_key(conn, plaintext)
    if existing is None:
        raise ValueError(f"another API key already uses the prefix {key_prefix(plaintext)!r}")
    return existing


def revoke(conn: Connection, key_id: str, *, actor: str) -> bool:
    """Revoke a key from now on; returns False when it was unknown or already revoked."""
    if not store.revoke(conn, key_id):
        return False
    audit.record(conn, actor=actor, action="api_key.revoked", subject_type="api_key",
                 subject_id=key_id, before={"revoked": False}, after={"revoked": True})
    return True
