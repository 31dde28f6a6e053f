"""POST /v1/webhooks/stripe: Stripe's events in, deposit workflows signalled.

The signature is verified on the raw body (Stripe-Signature, 300 s tolerance) by the gateway
adapter; a bad or old signature is a 400 problem and nothing is stored. Events the deposit's own
create call caused (Stripe names the request's idempotency key in the event) are recorded but
not signalled: the workflow has that answer from the call itself. Each event id is
processed once: it is stored first, and a redelivery of an event whose processing finished is
acknowledged without doing anything. Events for objects we do not know (or types we do not
use) are acknowledged and recorded, never errors, or Stripe would retry them for days. When
Temporal is unreachable the answer is 503, so Stripe delivers the event again later.
Must never: change a deposit itself (the workflow decides) or trust an unsigned body.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.deposit import PaymentEvent, payment_from_event_object
from adapters.gateway import WebhookEvent, WebhookSignatureInvalid
from api.deps import get_engine, get_temporal
from api.problems import Problem
from settlepay.db import run_in_transaction
from store import deposits as store

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

TOLERANCE_SECONDS = 300
PAYMENT_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed",
                  "payment_intent.canceled", "payment_intent.processing",
                  "payment_intent.requires_action")


def _verifier(request: Request):  # noqa: ANN202
    state = request.app.state
    verifier = getattr(state, "stripe_webhook_verifier", None)
    if verifier is None:
        from adapters.gateway import from_settings
        verifier = state.stripe_webhook_verifier = from_settings(state.settings)
    return verifier


@router.post("/stripe", summary="Receive a Stripe event")
async def receive(request: Request, engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    payload = await request.body()
    try:
        event: WebhookEvent = _verifier(request).verify_webhook(
            payload, request.headers.get("Stripe-Signature"), tolerance_seconds=TOLERANCE_SECONDS)
    except WebhookSignatureInvalid as error:
        raise Problem(400, "webhook_signature_invalid", "Webhook signature verification failed",
                      str(error)) from error

    def first_look(conn):  # noqa: ANN001, ANN202
        # One transaction for everything but the signal: store the event, find its deposit, and
        # when there is nothing to signal, record the final outcome right away.
        outcome, new = store.record_event(conn, event_id=event.id, type_=event.type,
                                          object_id=event.object_id, payload=event.object)
        if outcome != "received":
            return outcome, None, False
        deposit = _deposit_for(conn, event)
        if event.type not in PAYMENT_EVENTS:
            outcome = "ignored_type"
        elif deposit is None:
            outcome = "unknown_object"
        elif deposit["status"] in store.FINAL:
            outcome = "workflow_closed"   # the deposit finished already (e.g. by polling)
        elif event.request_idempotency_key == f"{deposit['workflow_id']}:create":
            # Caused by our own create-and-confirm call: its answer (replayed to any retry under
            # the same key) already tells the workflow; a signal would only repeat it.
            outcome = "answered_in_request"
        if outcome != "received":
            store.set_event_outcome(conn, event.id, outcome, deposit["id"] if deposit is not None else None)
        return outcome, deposit, new

    outcome, deposit, new = await run_in_threadpool(run_in_transaction, engine, first_look)
    if outcome != "received":
        return {"received": True, "duplicate": not new, "outcome": outcome}

    client: Client = await get_temporal(request)   # 503 while Temporal is unreachable
    signal = PaymentEvent(event_id=event.id, event_type=event.type,
                          payment=payment_from_event_object(event.object))
    try:
        await client.get_workflow_handle(deposit["workflow_id"]).signal("payment_event", signal)
        outcome = "signalled"
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        outcome = "workflow_closed"

    await run_in_threadpool(run_in_transaction, engine,
                            lambda conn: store.set_event_outcome(conn, event.id, outcome, deposit["id"]))
    return {"received": True, "duplicate": not new, "outcome": outcome}


def _deposit_for(conn, event: WebhookEvent):  # noqa: ANN001, ANN202
    """Our deposit for this event's object: by the metadata we set, else by payment intent."""
    deposit_id = event.metadata.get("settlepay_deposit_id")
    if deposit_id:
        return store.get(conn, deposit_id)
    object_id = event.object_id or ""
    if object_id.startswith("pi_"):
        return store.by_payment_intent(conn, object_id)
    return None
