"""/v1/webhook_endpoints and /v1/events: a partner's webhook endpoints, its events, their
delivery attempts, resends and recoveries (scope `webhooks:write`).

Tenant isolation is in every query's WHERE clause: a partner key finds only its own partner's
endpoints, events and attempts; anything else is 404, as if it did not exist. Operator keys see
all. HTTP only: every change is commands/webhooks.py, delivery is webhooks/ (the dispatcher).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection, RowMapping

from api.auth import Principal, require
from api.deps import EngineDep, SettingsDep
from api.idempotency import IdempotencyKey, optional_idempotency_key
from api.problems import DISCARD_SCOPE_KEY, PROBLEM_RESPONSES, Problem, not_found, refused
from api.schemas.webhooks import (
    Event,
    EventList,
    RecoverQueued,
    RecoverRequest,
    ResendQueued,
    ResendRequest,
    SecretRotation,
    WebhookAttempt,
    WebhookAttemptList,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointDeleted,
    WebhookEndpointList,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookSecret,
    WebhookTestSent,
)
from commands import webhooks as commands
from domain.scopes import Scope
from settlepay.db import run_in_transaction
from store import webhooks as store

router = APIRouter(tags=["webhooks"], responses=PROBLEM_RESPONSES)

WebhooksWriter = Annotated[Principal, Depends(require(Scope.WEBHOOKS_WRITE))]
OptionalIdempotencyKey = Annotated[IdempotencyKey | None, Depends(optional_idempotency_key)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=64,
                                     description="`next_cursor` of the page before")]
ENDPOINTS = "/v1/webhook_endpoints"


def _now() -> datetime:
    return datetime.now(UTC)


def _tenant(principal: Principal) -> str | None:
    """The partner whose rows the key may see; None: an operator, all of them."""
    return None if principal.is_operator else principal.partner_id


def _partner_for(principal: Principal, requested: str | None) -> str:
    if principal.is_operator:
        if requested is None:
            raise Problem(422, "validation_error", "The request is not valid",
                          "Operator keys must say which partner the endpoint belongs to.",
                          errors=[{"loc": ["body", "partner_id"], "message": "Field required",
                                   "type": "missing"}])
        return requested
    if principal.partner_id is None or requested not in (None, principal.partner_id):
        raise Problem(403, "partner_mismatch", "Not your partner",
                      "A partner key manages its own partner's endpoints only.")
    return principal.partner_id


def _endpoint(conn: Connection, principal: Principal, endpoint_id: str, *,
              for_update: bool = False) -> RowMapping:
    row = store.get_endpoint(conn, endpoint_id, partner_id=_tenant(principal),
                             for_update=for_update)
    if row is None:
        raise not_found("webhook_endpoint", endpoint_id)
    return row


def _event(conn: Connection, principal: Principal, event_id: str) -> RowMapping:
    row = store.get_event(conn, event_id, partner_id=_tenant(principal))
    if row is None:
        raise not_found("event", event_id)
    return row


def _keep_secret_out_of_the_idempotency_store(request: Request) -> None:
    """An answer holding a signing secret is not stored for replay (it would sit there in
    plain text): a retry with the same Idempotency-Key runs again. Creating is idempotent by
    itself (the endpoint id comes from the key; its secret is unsealed again); a retried
    rotation rotates once more, and the secret it answers is the one in force."""
    request.scope[DISCARD_SCOPE_KEY] = True


def _refused(error: commands.WebhookRefused) -> Problem:
    return refused(error.refusal, "The webhook request was refused")


# --- endpoints ---------------------------------------------------------------------------------

@router.post(ENDPOINTS, status_code=201, response_model=WebhookEndpointWithSecret,
             summary="Create a webhook endpoint (the answer holds its signing secret)")
def create_endpoint(body: WebhookEndpointCreate, request: Request, principal: WebhooksWriter,
                    engine: EngineDep, settings: SettingsDep,
                    idem: OptionalIdempotencyKey) -> WebhookEndpointWithSecret:
    _keep_secret_out_of_the_idempotency_store(request)
    partner_id = _partner_for(principal, body.partner_id)
    spec = commands.EndpointSpec(url=body.url, description=body.description,
                                 event_types=tuple(body.event_types),
                                 rate_limit_per_minute=body.rate_limit_per_minute)
    try:
        row, secret = run_in_transaction(engine, lambda conn: commands.create_endpoint(
            conn, settings, partner_id=partner_id, spec=spec, actor=principal.actor,
            operation_id=idem.operation_id if idem else None, now=_now()))
    except commands.WebhookRefused as error:
        raise _refused(error) from error
    return WebhookEndpointWithSecret(**commands.endpoint_resource(row), secret=secret)


@router.get(ENDPOINTS, response_model=WebhookEndpointList, summary="List webhook endpoints")
def list_endpoints(principal: WebhooksWriter, engine: EngineDep) -> WebhookEndpointList:
    with engine.connect() as conn:
        rows = store.list_endpoints(conn, partner_id=_tenant(principal))
    return WebhookEndpointList(data=[WebhookEndpoint(**commands.endpoint_resource(r))
                                     for r in rows])


@router.get(ENDPOINTS + "/{endpoint_id}", response_model=WebhookEndpoint,
            summary="Retrieve a webhook endpoint")
def retrieve_endpoint(endpoint_id: str, principal: WebhooksWriter,
                      engine: EngineDep) -> WebhookEndpoint:
    with engine.connect() as conn:
        return WebhookEndpoint(**commands.endpoint_resource(
            _endpoint(conn, principal, endpoint_id)))


@router.patch(ENDPOINTS + "/{endpoint_id}", response_model=WebhookEndpoint,
              summary="Update a webhook endpoint; disable or enable it")
def update_endpoint(endpoint_id: str, body: WebhookEndpointUpdate, principal: WebhooksWriter,
                    engine: EngineDep, settings: SettingsDep) -> WebhookEndpoint:
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "description", "event_types", "disabled"):
        if name in changes and changes[name] is None:
            raise Problem(422, "validation_error", "The request is not valid",
                          f"`{name}` cannot be null.",
                          errors=[{"loc": ["body", name], "message": "may not be null",
                                   "type": "value_error"}])

    def work(conn: Connection) -> RowMapping:
        row = _endpoint(conn, principal, endpoint_id, for_update=True)
        return commands.update_endpoint(conn, settings, row, changes=changes,
                                        actor=principal.actor, now=_now())

    try:
        return WebhookEndpoint(**commands.endpoint_resource(run_in_transaction(engine, work)))
    except commands.WebhookRefused as error:
        raise _refused(error) from error


@router.delete(ENDPOINTS + "/{endpoint_id}", response_model=WebhookEndpointDeleted,
               summary="Delete a webhook endpoint (its events and attempts stay readable)")
def delete_endpoint(endpoint_id: str, principal: WebhooksWriter,
                    engine: EngineDep) -> WebhookEndpointDeleted:
    def work(conn: Connection) -> None:
        row = _endpoint(conn, principal, endpoint_id, for_update=True)
        commands.delete_endpoint(conn, row, actor=principal.actor, now=_now())

    run_in_transaction(engine, work)
    return WebhookEndpointDeleted(id=endpoint_id)


@router.get(ENDPOINTS + "/{endpoint_id}/secret", response_model=WebhookSecret,
            summary="The endpoint's current signing secret")
def endpoint_secret(endpoint_id: str, principal: WebhooksWriter, engine: EngineDep,
                    settings: SettingsDep) -> WebhookSecret:
    with engine.connect() as conn:
        row = _endpoint(conn, principal, endpoint_id)
    return WebhookSecret(endpoint_id=endpoint_id, secret=commands.endpoint_secret(settings, row))


@router.post(ENDPOINTS + "/{endpoint_id}/rotate_secret",
             response_model=WebhookEndpointWithSecret,
             summary="A new signing secret; the old one keeps signing during the grace")
def rotate_secret(endpoint_id: str, request: Request, principal: WebhooksWriter,
                  engine: EngineDep, settings: SettingsDep,
                  body: SecretRotation | None = None) -> WebhookEndpointWithSecret:
    _keep_secret_out_of_the_idempotency_store(request)
    grace = (timedelta(seconds=body.grace_seconds)
             if body is not None and body.grace_seconds is not None else None)

    def work(conn: Connection) -> tuple[RowMapping, str]:
        row = _endpoint(conn, principal, endpoint_id, for_update=True)
        return commands.rotate_secret(conn, settings, row, grace=grace, actor=principal.actor,
                                      now=_now())

    try:
        row, secret = run_in_transaction(engine, work)
    except commands.WebhookRefused as error:
        raise _refused(error) from error
    return WebhookEndpointWithSecret(**commands.endpoint_resource(row), secret=secret)


@router.post(ENDPOINTS + "/{endpoint_id}/test", status_code=202, response_model=WebhookTestSent,
             summary="Send a `webhook.test` event to this endpoint")
def send_test(endpoint_id: str, principal: WebhooksWriter, engine: EngineDep) -> WebhookTestSent:
    def work(conn: Connection) -> None:
        commands.send_test(conn, _endpoint(conn, principal, endpoint_id),
                           actor=principal.actor)

    try:
        run_in_transaction(engine, work)
    except commands.WebhookRefused as error:
        raise _refused(error) from error
    return WebhookTestSent(endpoint_id=endpoint_id)


@router.get(ENDPOINTS + "/{endpoint_id}/attempts", response_model=WebhookAttemptList,
            summary="Delivery attempts to this endpoint, newest first")
def endpoint_attempts(endpoint_id: str, principal: WebhooksWriter, engine: EngineDep,
                      limit: Limit = 50, cursor: Cursor = None) -> WebhookAttemptList:
    before = _attempt_cursor(cursor)
    with engine.connect() as conn:
        if store.get_endpoint(conn, endpoint_id, partner_id=_tenant(principal),
                              deleted=True) is None:
            raise not_found("webhook_endpoint", endpoint_id)
        rows = store.attempts(conn, partner_id=_tenant(principal), endpoint_id=endpoint_id,
                              limit=limit + 1, before_id=before)
    return _attempt_page(rows, limit)


@router.post(ENDPOINTS + "/{endpoint_id}/recover", status_code=202, response_model=RecoverQueued,
             summary="Resend every event whose delivery failed since `since` (<= 14 days)")
def recover(endpoint_id: str, body: RecoverRequest, principal: WebhooksWriter,
            engine: EngineDep) -> RecoverQueued:
    def work(conn: Connection) -> int:
        row = _endpoint(conn, principal, endpoint_id, for_update=True)
        return commands.recover(conn, row, since=body.since, actor=principal.actor, now=_now())

    try:
        count = run_in_transaction(engine, work)
    except commands.WebhookRefused as error:
        raise _refused(error) from error
    return RecoverQueued(endpoint_id=endpoint_id, since=body.since, messages=count)


# --- events ------------------------------------------------------------------------------------

@router.get("/v1/events", response_model=EventList,
            summary="The partner's events, newest first (cursor pagination)")
def list_events(principal: WebhooksWriter, engine: EngineDep, limit: Limit = 50,
                cursor: Cursor = None,
                type: Annotated[str | None, Query(max_length=200)] = None) -> EventList:
    with engine.connect() as conn:
        before = None
        if cursor is not None:
            anchor = store.get_event(conn, cursor, partner_id=_tenant(principal))
            if anchor is None:
                raise _bad_cursor()
            before = anchor["seq"]
        rows = store.list_events(conn, partner_id=_tenant(principal), limit=limit + 1,
                                 before_seq=before, event_type=type)
    page = rows[:limit]
    return EventList(data=[Event(**commands.event_resource(r)) for r in page],
                     has_more=len(rows) > limit,
                     next_cursor=page[-1]["id"] if len(rows) > limit else None)


@router.get("/v1/events/{event_id}", response_model=Event, summary="Retrieve an event")
def retrieve_event(event_id: str, principal: WebhooksWriter, engine: EngineDep) -> Event:
    with engine.connect() as conn:
        return Event(**commands.event_resource(_event(conn, principal, event_id)))


@router.get("/v1/events/{event_id}/attempts", response_model=WebhookAttemptList,
            summary="Delivery attempts of this event, newest first")
def event_attempts(event_id: str, principal: WebhooksWriter, engine: EngineDep,
                   limit: Limit = 50, cursor: Cursor = None) -> WebhookAttemptList:
    before = _attempt_cursor(cursor)
    with engine.connect() as conn:
        _event(conn, principal, event_id)
        rows = store.attempts(conn, partner_id=_tenant(principal), event_id=event_id,
                              limit=limit + 1, before_id=before)
    return _attempt_page(rows, limit)


@router.post("/v1/events/{event_id}/resend", status_code=202, response_model=ResendQueued,
             summary="Send the event once more to one endpoint (not retried if it fails)")
def resend(event_id: str, body: ResendRequest, principal: WebhooksWriter,
           engine: EngineDep) -> ResendQueued:
    def work(conn: Connection) -> None:
        event = _event(conn, principal, event_id)
        endpoint = _endpoint(conn, principal, body.endpoint_id)
        commands.resend(conn, event, endpoint, actor=principal.actor, now=_now())

    try:
        run_in_transaction(engine, work)
    except commands.WebhookRefused as error:
        raise _refused(error) from error
    return ResendQueued(event_id=event_id, endpoint_id=body.endpoint_id)


# --- pages -------------------------------------------------------------------------------------

def _bad_cursor() -> Problem:
    return Problem(422, "cursor_invalid", "The cursor is not valid",
                   "Pass the `next_cursor` of the page before, unchanged.")


def _attempt_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise _bad_cursor()
    return int(cursor)


def _attempt_page(rows: list[RowMapping], limit: int) -> WebhookAttemptList:
    page = rows[:limit]
    return WebhookAttemptList(
        data=[WebhookAttempt(**commands.attempt_resource(r)) for r in page],
        has_more=len(rows) > limit,
        next_cursor=str(page[-1]["id"]) if len(rows) > limit else None)
