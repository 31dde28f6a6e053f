"""API keys: make one, roll one, revoke one, each with its audit record; store a chosen one.

The plaintext of a new key is handed to the caller once (`create_api_key`, `grant`, `roll`) and
can never be recovered: the store keeps its hash (see `store.api_keys`). The audit records name
the key by id and prefix, never by its secret.

Who may grant what (`Grantor`, the key asking, or the CLI / system):
* an operator makes partner keys (naming the partner) and operator keys, with any scopes a key
  of that role may hold, and sets rate limits;
* a partner makes keys of its own partner only, with a subset of its own scopes (all of them
  when it names none), and no rate limits (403 `operator_only`);
* rolling or revoking: an operator any key, a partner the keys of its partner whose scopes it
  holds itself. Rolling makes a new key with the old one's definition and gives the old one an
  expiry (immediate or up to a week later), so clients can switch over.
* a partner key never holds an operator-only scope (domain.scopes.OPERATOR_ONLY).
* every key is pinned to an API version (domain/api_versions.py): the one asked for, which must
  be served, else the current one; a rolled key keeps its predecessor's unless the roll names
  another (how a partner moves to a new version).
Must never: log or audit a plaintext key; open its own transaction.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
from domain import api_versions
from domain.rate_limits import InvalidRateLimit, parse
from domain.scopes import ALL_SCOPES, OPERATOR_ONLY, Role, default_scopes, unknown
from store import api_keys as store
from store.api_keys import MIN_KEY_LENGTH, PREFIX_LENGTH, key_prefix
from workflows.contracts.refusal import Refusal

SYSTEM_ACTOR = "system:api_keys"
ROLL_EXPIRY_MAX = timedelta(days=7)


class ApiKeyRefusal(StrEnum):
    INVALID = "api_key_invalid"              # a definition no key can have (422)
    SCOPE_NOT_HELD = "scope_not_held"        # a partner grants only scopes it holds (403)
    PARTNER_MISMATCH = "partner_mismatch"    # a partner makes keys of its own partner (403)
    OPERATOR_ONLY = "operator_only"          # operator keys, rate limits: operators only (403)
    NOT_FOUND = "api_key_not_found"          # unknown, or another partner's (404)
    NOT_LIVE = "api_key_not_live"            # rolling a revoked or expired key (409)


class ApiKeyRefused(ValueError):
    """A key change refused; `refusal.code` is an ApiKeyRefusal."""

    def __init__(self, code: ApiKeyRefusal, reason: str) -> None:
        self.refusal = Refusal(code, reason)
        super().__init__(reason)


@dataclass(frozen=True)
class Grantor:
    """Who asks for a key change: an API key's role, partner and scopes (or the system)."""

    actor: str
    role: str
    partner_id: str | None
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR

    @classmethod
    def system(cls, actor: str = SYSTEM_ACTOR) -> Grantor:
        return cls(actor, Role.OPERATOR, None, ALL_SCOPES)


def _definition(role: str, partner_id: str | None, scopes: Iterable[str] | None,
                name: str) -> frozenset[str]:
    """The key's scopes, once its definition is known to be sound (ApiKeyRefused otherwise)."""
    def invalid(reason: str) -> ApiKeyRefused:
        return ApiKeyRefused(ApiKeyRefusal.INVALID, reason)

    if role not in tuple(Role):
        raise invalid(f"role must be one of {tuple(str(r) for r in Role)}, not {role!r}")
    if (role == Role.PARTNER) != bool(partner_id):
        raise invalid("a partner key needs a partner_id; an operator key must not have one")
    if not name or not name.strip():
        raise invalid("an API key needs a name")
    chosen = frozenset(str(s) for s in scopes) if scopes is not None else default_scopes(role)
    if bad := unknown(chosen):
        raise invalid(f"unknown scopes: {', '.join(bad)}")
    if role == Role.PARTNER and (held := sorted(chosen & OPERATOR_ONLY)):
        raise invalid(f"a partner key cannot hold {', '.join(held)}")
    return chosen


def _limits(rate_limits: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return {name: limit.as_json() for name, limit in parse(rate_limits or {}).items()}
    except InvalidRateLimit as error:
        raise ApiKeyRefused(ApiKeyRefusal.INVALID, str(error)) from error


def _version(api_version: str | None) -> str:
    """The version a new key is pinned to: the one asked for (served), else the current one."""
    if api_version is None:
        return api_versions.current()
    if not api_versions.served(api_version):
        raise ApiKeyRefused(ApiKeyRefusal.INVALID,
                            f"api_version must be one of {', '.join(api_versions.VERSIONS)}")
    return api_version


def _insert(conn: Connection, plaintext: str, role: str, partner_id: str | None,
            scopes: frozenset[str], name: str, actor: str, *,
            rate_limits: Mapping[str, Any] | None = None,
            rolled_from: str | None = None, api_version: str | None = None) -> str | None:
    """Insert and audit the key unless its prefix exists; returns the new id or None."""
    key_id = "key_" + uuid.uuid4().hex[:20]
    version = api_version or api_versions.current()
    if not store.insert(conn, key_id=key_id, plaintext=plaintext, role=role,
                        partner_id=partner_id, scopes=scopes, name=name,
                        rate_limits=rate_limits, api_version=version, created_by=actor,
                        rolled_from=rolled_from):
        return None
    audit.record(conn, actor=actor, action="api_key.created", subject_type="api_key",
                 subject_id=key_id, before=None,
                 after={"id": key_id, "prefix": key_prefix(plaintext), "role": role,
                        "partner_id": partner_id, "scopes": sorted(scopes), "name": name,
                        "rate_limits": dict(rate_limits or {}), "rolled_from": rolled_from,
                        "api_version": version})
    return key_id


def _new(conn: Connection, role: str, partner_id: str | None, scopes: frozenset[str],
         name: str, actor: str, *, rate_limits: Mapping[str, Any] | None = None,
         rolled_from: str | None = None, api_version: str | None = None) -> tuple[str, str]:
    while True:  # a prefix collision (78 random bits) is all but impossible; draw again if so
        # The public prefix has randomness of its own, so the secret after it keeps 256 bits.
        plaintext = ("sp_" + secrets.token_urlsafe(12)[:PREFIX_LENGTH - 3]
                     + secrets.token_urlsafe(32))
        key_id = _insert(conn, plaintext, role, partner_id, scopes, name, actor,
                         rate_limits=rate_limits, rolled_from=rolled_from,
                         api_version=api_version)
        if key_id is not None:
            return key_id, plaintext


def create_api_key(conn: Connection, role: str, partner_id: str | None,
                   scopes: Iterable[str] | None, name: str, *, actor: str = SYSTEM_ACTOR,
                   rate_limits: Mapping[str, Any] | None = None,
                   api_version: str | None = None) -> tuple[str, str]:
    """Make a new key; returns (id, plaintext). The plaintext cannot be recovered later."""
    chosen = _definition(role, partner_id, scopes, name)
    return _new(conn, role, partner_id, chosen, name, actor, rate_limits=_limits(rate_limits),
                api_version=_version(api_version))


def grant(conn: Connection, grantor: Grantor, *, role: str | None, partner_id: str | None,
          scopes: Iterable[str] | None, name: str,
          rate_limits: Mapping[str, Any] | None,
          api_version: str | None = None) -> tuple[RowMapping, str]:
    """A key made by `grantor` (see the module docstring); returns (row, plaintext)."""
    if grantor.is_operator:
        role = role or (Role.PARTNER if partner_id else Role.OPERATOR)
    else:
        if role not in (None, Role.PARTNER) or rate_limits:
            raise ApiKeyRefused(ApiKeyRefusal.OPERATOR_ONLY,
                                "only an operator key makes operator keys or sets rate limits")
        if partner_id not in (None, grantor.partner_id):
            raise ApiKeyRefused(ApiKeyRefusal.PARTNER_MISMATCH,
                                "a partner key makes keys of its own partner only")
        role, partner_id = Role.PARTNER, grantor.partner_id
        scopes = grantor.scopes if scopes is None else scopes
        _holds(grantor, frozenset(str(s) for s in scopes))
    chosen = _definition(role, partner_id, scopes, name)
    key_id, plaintext = _new(conn, role, partner_id, chosen, name, grantor.actor,
                             rate_limits=_limits(rate_limits), api_version=_version(api_version))
    row = store.get(conn, key_id)
    assert row is not None
    return row, plaintext


def _holds(grantor: Grantor, scopes: frozenset[str]) -> None:
    if not grantor.is_operator and (missing := sorted(scopes - grantor.scopes)):
        raise ApiKeyRefused(ApiKeyRefusal.SCOPE_NOT_HELD,
                            f"this key does not hold {', '.join(missing)} itself")


def visible(conn: Connection, grantor: Grantor, key_id: str, *,
            for_update: bool = False) -> RowMapping:
    """The key's row if the grantor may see it (a partner: its partner's keys); else NOT_FOUND."""
    row = store.get(conn, key_id, for_update=for_update,
                    partner_id=None if grantor.is_operator else grantor.partner_id)
    if row is None or (not grantor.is_operator and grantor.partner_id is None):
        raise ApiKeyRefused(ApiKeyRefusal.NOT_FOUND, f"There is no API key {key_id!r}.")
    return row


def roll(conn: Connection, grantor: Grantor, key_id: str, expires_in: timedelta, *,
         api_version: str | None = None) -> tuple[RowMapping, RowMapping, str]:
    """A new key with the old one's definition, pinned to `api_version` (default: the old
    key's); the old one expires after `expires_in` (0: at once, at most ROLL_EXPIRY_MAX).
    Returns (old row after, new row, new plaintext)."""
    if not timedelta(0) <= expires_in <= ROLL_EXPIRY_MAX:
        raise ApiKeyRefused(ApiKeyRefusal.INVALID,
                            f"the old key may live on for 0 to {ROLL_EXPIRY_MAX} only")
    old = visible(conn, grantor, key_id, for_update=True)
    _holds(grantor, frozenset(old["scopes"]))
    if old["revoked_at"] is not None or old["expired"]:
        raise ApiKeyRefused(ApiKeyRefusal.NOT_LIVE,
                            f"API key {key_id!r} is revoked or expired: make a new one instead")
    new_id, plaintext = _new(conn, old["role"], old["partner_id"], frozenset(old["scopes"]),
                             old["name"], grantor.actor, rate_limits=old["rate_limits"],
                             rolled_from=key_id,
                             api_version=(old["api_version"] if api_version is None
                                          else _version(api_version)))
    after = store.expire(conn, key_id, expires_in.total_seconds())
    assert after is not None
    audit.record(conn, actor=grantor.actor, action="api_key.rolled", subject_type="api_key",
                 subject_id=key_id,
                 before={"expires_at": _iso(old["expires_at"])},
                 after={"expires_at": _iso(after["expires_at"]), "replaced_by": new_id})
    new = store.get(conn, new_id)
    assert new is not None
    return after, new, plaintext


def revoke_key(conn: Connection, grantor: Grantor, key_id: str) -> RowMapping:
    """Revoke a key the grantor may manage (revoking it again changes nothing); its row after."""
    row = visible(conn, grantor, key_id, for_update=True)
    _holds(grantor, frozenset(row["scopes"]))
    revoke(conn, key_id, actor=grantor.actor)
    after = store.get(conn, key_id)
    assert after is not None
    return after


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


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


# --- the api_key resource --------------------------------------------------------------------

def status_of(row: RowMapping) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    return "expired" if row["expired"] else "active"


def api_key_payload(row: RowMapping) -> dict[str, Any]:
    """The api_key resource (never its secret or hash)."""
    return {"object": "api_key", "id": row["id"], "prefix": row["prefix"], "name": row["name"],
            "role": row["role"], "partner_id": row["partner_id"],
            "scopes": sorted(row["scopes"]), "status": status_of(row),
            "rate_limits": dict(row["rate_limits"] or {}), "api_version": row["api_version"],
            "created_at": row["created_at"],
            "created_by": row["created_by"], "expires_at": row["expires_at"],
            "revoked_at": row["revoked_at"], "last_used_at": row["last_used_at"],
            "rolled_from": row["rolled_from"]}
