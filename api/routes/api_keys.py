"""/v1/api_keys: make, list, read, roll and revoke API keys through the API.

Who may do what is `commands.api_keys` (an operator makes partner and operator keys and sets
rate limits; a partner makes keys of its own partner with a subset of its scopes, and manages
only keys whose scopes it holds). Every change writes its audit record there.

The secret is in the answer of POST /v1/api_keys and POST /v1/api_keys/{id}/roll only, once:
those answers are never kept for an Idempotency-Key replay (that would store the secret), so a
retried request makes another key (revoke the one you did not get). `Cache-Control: no-store`.
A partner key sees its own partner's keys only: another partner's, or an operator's, is 404.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Connection, RowMapping

from api.auth import ApiKeysReader, ApiKeysWriter, Principal
from api.deps import EngineDep
from api.pagination import ListParams, PartnerFilter, read_page, tenancy
from api.problems import DISCARD_SCOPE_KEY, PROBLEM_RESPONSES, refused
from api.schemas.api_keys import ApiKey, ApiKeyCreate, ApiKeyList, ApiKeyRoll, ApiKeyWithSecret
from commands import api_keys as commands
from commands.api_keys import ApiKeyRefused, Grantor, api_key_payload
from settlepay.db import run_in_transaction
from store import api_keys as store

router = APIRouter(prefix="/v1/api_keys", tags=["api_keys"], responses=PROBLEM_RESPONSES)


def grantor(principal: Principal) -> Grantor:
    return Grantor(principal.actor, principal.role, principal.partner_id, principal.scopes)


def _secret_answer(request: Request, response: Response, row: RowMapping,
                   plaintext: str) -> ApiKeyWithSecret:
    request.scope[DISCARD_SCOPE_KEY] = True    # never stored for a replay: it holds the secret
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"{router.prefix}/{row['id']}"
    return ApiKeyWithSecret(**api_key_payload(row), secret=plaintext)


@router.post("", status_code=201, response_model=ApiKeyWithSecret, summary="Create an API key",
             description="The answer holds the key's secret, shown this once.")
def create(body: ApiKeyCreate, request: Request, response: Response, principal: ApiKeysWriter,
           engine: EngineDep) -> ApiKeyWithSecret:
    limits = None if body.rate_limits is None else {
        name: limit.model_dump() for name, limit in body.rate_limits.items()}

    def work(conn: Connection) -> tuple[RowMapping, str]:
        return commands.grant(conn, grantor(principal), role=body.role,
                              partner_id=body.partner_id, scopes=body.scopes, name=body.name,
                              rate_limits=limits, api_version=body.api_version)

    try:
        row, plaintext = run_in_transaction(engine, work)
    except ApiKeyRefused as refusal:
        raise refused(refusal.refusal, "The API key was not made") from refusal
    return _secret_answer(request, response, row, plaintext)


@router.get("", response_model=ApiKeyList, summary="List API keys",
            description="The keys this key can see (a partner: its partner's), newest first.")
def list_keys(query: ListParams, principal: ApiKeysReader, engine: EngineDep,
              partner: PartnerFilter = None,
              role: Annotated[str | None, Query(pattern="^(partner|operator)$",
                                                description="Only keys of this role.")] = None,
              ) -> ApiKeyList:
    tenant = tenancy(principal, partner)
    with engine.connect() as conn:
        page = read_page(conn, store.LISTING, query, tenant, filters={"role": role})
    return ApiKeyList(url=router.prefix, has_more=page.has_more,
                      data=[ApiKey(**api_key_payload(row)) for row in page.rows])


@router.get("/{key_id}", response_model=ApiKey, summary="Retrieve an API key")
def retrieve(key_id: str, principal: ApiKeysReader, engine: EngineDep) -> ApiKey:
    with engine.connect() as conn:
        try:
            row = commands.visible(conn, grantor(principal), key_id)
        except ApiKeyRefused as refusal:
            raise refused(refusal.refusal, "No such API key") from refusal
    return ApiKey(**api_key_payload(row))


@router.delete("/{key_id}", response_model=ApiKey, summary="Revoke an API key",
               description="The key stops working at once. Revoking it again changes nothing.")
def revoke(key_id: str, principal: ApiKeysWriter, engine: EngineDep) -> ApiKey:
    try:
        row = run_in_transaction(
            engine, lambda conn: commands.revoke_key(conn, grantor(principal), key_id))
    except ApiKeyRefused as refusal:
        raise refused(refusal.refusal, "The API key was not revoked") from refusal
    return ApiKey(**api_key_payload(row))


@router.post("/{key_id}/roll", status_code=201, response_model=ApiKeyWithSecret,
             summary="Roll an API key",
             description="A new key with the same definition (its secret shown this once); the "
                         "old key keeps working for `expires_in_seconds`, then stops. With "
                         "`api_version`, the new key is pinned to that API version.")
def roll(key_id: str, request: Request, response: Response, principal: ApiKeysWriter,
         engine: EngineDep, body: ApiKeyRoll | None = None) -> ApiKeyWithSecret:
    asked = body or ApiKeyRoll()
    expires_in = timedelta(seconds=asked.expires_in_seconds)

    def work(conn: Connection) -> tuple[RowMapping, str]:
        _, new, plaintext = commands.roll(conn, grantor(principal), key_id, expires_in,
                                          api_version=asked.api_version)
        return new, plaintext

    try:
        row, plaintext = run_in_transaction(engine, work)
    except ApiKeyRefused as refusal:
        raise refused(refusal.refusal, "The API key was not rolled") from refusal
    return _secret_answer(request, response, row, plaintext)
