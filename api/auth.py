"""Who is calling: API-key authentication, scopes, and tenant isolation.

    def route(principal: DepositsWriter) -> ...: ...             # 401 / 403 otherwise
    player = visible_player(conn, principal, player_id)             # 404 for another partner's

A key comes as `Authorization: Bearer <key>` or `X-Api-Key: <key>`. No key or a wrong one → 401
(with `WWW-Authenticate`); a valid key without the scope → 403. A partner key sees only its own
partner's players; for anything else the answer is 404, exactly as for a player that does not
exist, so a partner cannot even learn that another partner's player id is real. Operator keys
see all players.

The principal is looked up once per request: the idempotency middleware, which must know the
key before anything else, leaves it in the ASGI scope and `authenticate` picks it up from there.
This module never decides business rules; it answers "who" and "may they see it".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, RowMapping
from starlette.concurrency import run_in_threadpool

from api import versioning
from api.problems import Problem, not_found
from domain.scopes import OPERATOR_ONLY, Role, Scope
from store import api_keys, players

PRINCIPAL_SCOPE_KEY = "settlepay.principal"


@dataclass(frozen=True)
class Principal:
    api_key_id: str
    role: str                  # domain.scopes.Role: "partner" | "operator"
    partner_id: str | None     # set for partner keys only
    scopes: frozenset[str]
    # The key's own rate limits (domain/rate_limits.py), {"*" | scope: {requests, window}}.
    rate_limits: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # The API version the key is pinned to (domain/api_versions.py); None when not looked up.
    api_version: str | None = field(default=None, compare=False)

    @property
    def actor(self) -> str:
        """The audit actor string for changes made by this key."""
        return f"api_key:{self.api_key_id}"

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR

    def sees_partner(self, partner_id: str) -> bool:
        return self.is_operator or partner_id == self.partner_id

    @classmethod
    def of(cls, key: api_keys.ApiKey) -> Principal:
        return cls(api_key_id=key.id, role=key.role, partner_id=key.partner_id, scopes=key.scopes,
                   rate_limits=key.rate_limits, api_version=key.api_version)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer` or `X-Api-Key`; `headers` is any str→str mapping
    with lower-case names (Starlette's Headers, or a dict built from the raw ASGI headers)."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _unauthorized(detail: str, code: str) -> Problem:
    return Problem(401, code, "Authentication required", detail,
                   headers={"WWW-Authenticate": 'Bearer realm="settlepay"'})


# Declared for the OpenAPI document (the "Authorize" button of /docs); the key itself is read
# by `presented_key`, the same way the idempotency middleware reads it.
_BEARER = HTTPBearer(auto_error=False, scheme_name="ApiKeyBearer",
                     description="`Authorization: Bearer <API key>`")
_HEADER = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="ApiKeyHeader",
                       description="The API key in `X-Api-Key` (instead of Authorization)")


async def authenticate(request: Request,
                       _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
                       _header: Annotated[str | None, Security(_HEADER)]) -> Principal:
    """FastAPI dependency: the calling key's principal, or a 401 problem."""
    cached = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if cached is not None:
        return cached
    plaintext = presented_key(request.headers)
    if plaintext is None:
        raise _unauthorized("Send your API key as `Authorization: Bearer <key>`.",
                            "api_key_missing")
    engine = request.app.state.engine

    def lookup() -> api_keys.ApiKey | None:
        with engine.connect() as conn:
            return api_keys.authenticate(conn, plaintext)

    key = await run_in_threadpool(lookup)
    if key is None:
        raise _unauthorized("The API key is unknown or revoked.", "api_key_invalid")
    principal = Principal.of(key)
    request.scope[PRINCIPAL_SCOPE_KEY] = principal
    versioning.settle(request.scope, principal.api_version)
    return principal


def require(scope: Scope | str) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: the principal, if its key holds `scope` (else 401 / 403)."""
    needed = str(scope)

    async def dependency(request: Request,
                         principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if needed not in principal.scopes:
            raise Problem(403, "insufficient_scope", "The API key lacks a scope",
                          f"This request needs the scope {needed!r}.")
        if needed in OPERATOR_ONLY and not principal.is_operator:
            # Never issued to a partner (commands/api_keys.py); a row that holds one anyway
            # (forged, or from before the rule) still does not open the house's routes.
            raise Problem(403, "operator_only", "Only an operator key may do this",
                          f"The scope {needed!r} is an operator's; this is a partner key.")
        limits = getattr(request.app.state, "rate_limits", None)   # api/rate_limits.py
        if limits is not None:
            await limits.check_scope(request.app.state.engine, principal, needed)
        return principal

    dependency.__name__ = f"require_{needed.replace(':', '_')}"
    return dependency


def visible_player(conn: Connection, principal: Principal, player_id: str, *,
                   for_update: bool = False) -> RowMapping:
    """The player row if the principal may see it; 404 `player_not_found` otherwise.

    Tenant isolation lives in the WHERE clause (a partner's lookup cannot match another
    partner's row), not in a check after the fact.
    """
    row = players.get(conn, player_id, for_update=for_update,
                      partner_id=None if principal.is_operator else principal.partner_id)
    if row is None:
        raise not_found("player", player_id)
    return row


# Who may call a route, as dependency aliases: `def route(principal: DepositsWriter) -> ...`.
PlayersReader = Annotated[Principal, Depends(require(Scope.PLAYERS_READ))]
PlayersWriter = Annotated[Principal, Depends(require(Scope.PLAYERS_WRITE))]
DepositsWriter = Annotated[Principal, Depends(require(Scope.DEPOSITS_WRITE))]
WithdrawalsWriter = Annotated[Principal, Depends(require(Scope.WITHDRAWALS_WRITE))]
BetsWriter = Annotated[Principal, Depends(require(Scope.BETS_WRITE))]
ResultsWriter = Annotated[Principal, Depends(require(Scope.RESULTS_WRITE))]
Operator = Annotated[Principal, Depends(require(Scope.OPERATOR_REVIEW))]
ApiKeysReader = Annotated[Principal, Depends(require(Scope.API_KEYS_READ))]
ApiKeysWriter = Annotated[Principal, Depends(require(Scope.API_KEYS_WRITE))]
