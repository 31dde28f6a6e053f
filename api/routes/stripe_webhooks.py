"""POST /v1/webhooks/stripe: Stripe's events in, deposit workflows signalled.

The signature is verified on the raw body (Stripe-Signature, 300 s tolerance) by the gateway
adapter; a bad or old signature is a 400 problem and nothing is stored. Events the deposit's own
create call caused (Stripe names the request's idempotency key in the event) are recorded but
not signalled: the workflow has that answer from the call itself. Each event id is
processed once: it is stored first, and a redelivery of an event whose processing finished is
acknowledged without doing anything; a redelivery arriving while the first delivery is still
being processed (the event stored, its outcome not yet) is processed again, and the event's
outcome is `signalled` if either delivery's signal reached the deposit's run (a signal that
found the run already closed never overwrites it). Events for objects we do not know (or types
we do not use) are acknowledged and recorded, never errors, or Stripe would retry them for
days. When Temporal is unreachable the answer is 503, so Stripe delivers the event again later.

A verdict for a deposit whose workflow has closed (the deposit failed, went to operator review,
or the run ended otherwise) is never dropped: `commands.deposits.settle_after_close` credits a
success through the deposit's own path and ledger key (`credited_after_close`), fails a deposit
still open on a failure, and leaves anything that does not match the deposit to an operator
(`mismatch_after_close`) (issue 9, item 5).
Must never: change a deposit except through commands/deposits.py, or trust an unsigned body.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Connection, RowMapping
from temporalio.service import RPCError, RPCStatusCode

from adapters.gateway import PaymentGateway, WebhookEvent, WebhookSignatureInvalid
from api import workflow_start
from api.deps import EngineDep, get_temporal
from api.problems import PROBLEM_RESPONSES, Problem
from api.threads import run_sync
from commands import deposits as commands
from settlepay.db import run_in_transaction
from settlepay.observability import tracing
from store import deposits as store
from workflows.contracts.deposit import PAYMENT_EVENT_SIGNAL, DepositStatus, PaymentEvent

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

TOLERANCE_SECONDS = 300
PAYMENT_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed",
                  "payment_intent.canceled", "payment_intent.processing",
                  "payment_intent.requires_action")
ACTOR = "webhook:stripe"


class Received(BaseModel):
    """What was done with the event (Stripe only looks at the 2xx)."""

    received: bool
    duplicate: bool
    outcome: str


def _verifier(request: Request) -> PaymentGateway:
    state = request.app.state
    verifier = getattr(state, "stripe_webhook_verifier", None)
    if verifier is None:
        from adapters.gateway import from_settings
        verifier = state.stripe_webhook_verifier = from_settings(state.settings)
    return verifier


@router.post("/stripe", response_model=Received, summary="Receive a Stripe event",
             responses={400: {**PROBLEM_RESPONSES[400], "description":
                              "The Stripe-Signature is missing, wrong or too old"},
                        **{code: PROBLEM_RESPONSES[code] for code in (413, 422)}})
async def receive(request: Request, engine: EngineDep) -> Received:
    payload = await request.body()
    try:
        event: WebhookEvent = _verifier(request).verify_webhook(
            payload, request.headers.get("Stripe-Signature"), tolerance_seconds=TOLERANCE_SECONDS)
    except WebhookSignatureInvalid as error:
        raise Problem(400, "webhook_signature_invalid", "Webhook signature verification failed",
                      str(error)) from error

    def first_look(conn: Connection) -> tuple[str, RowMapping | None, bool]:
        # One transaction for everything but the signal: store the event, find its deposit, and
        # when there is nothing to signal, do what there is to do and record the outcome.
        outcome, new = store.record_event(conn, event_id=event.id, type_=event.type,
                                          object_id=event.object_id, payload=event.object)
        if outcome != "received":
            return outcome, None, False
        deposit = _deposit_for(conn, event)
        if event.type not in PAYMENT_EVENTS:
            outcome = "ignored_type"
        elif deposit is None:
            outcome = "unknown_object"
        elif deposit["status"] in (DepositStatus.FAILED, DepositStatus.REVIEW,
                                   DepositStatus.SUCCEEDED):
            # The workflow has closed (or is closing): the deposit's own command settles it.
            outcome = _settle_after_close(conn, event, deposit)
        elif event.request_idempotency_key == f"{deposit['workflow_id']}:create":
            # Caused by our own create-and-confirm call: its answer (replayed to any retry under
            # the same key) already tells the workflow; a signal would only repeat it.
            outcome = "answered_in_request"
        if outcome != "received":
            store.set_event_outcome(conn, event.id, outcome,
                                    deposit["id"] if deposit is not None else None)
        return outcome, deposit, new

    outcome, deposit, new = await run_sync(run_in_transaction, engine, first_look)
    if outcome != "received" or deposit is None:
        return Received(received=True, duplicate=not new, outcome=outcome)

    client = await get_temporal(request)   # 503 while Temporal is unreachable
    signal = PaymentEvent(event_id=event.id, event_type=event.type,
                          payment=commands.payment_from_event_object(event.object))
    closed = False
    handle = client.get_workflow_handle(deposit["workflow_id"])
    # The signal and what follows it belong to the deposit's trace (linked to this request's).
    with tracing.continuing("deposit payment event",
                            await workflow_start.operation_traceparent(handle)):
        try:
            await handle.signal(PAYMENT_EVENT_SIGNAL, signal)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            closed = True

        def finish(conn: Connection) -> str:
            outcome = "signalled"
            if closed:   # the run ended before the event came: settle it here
                current = store.event_outcome_for_update(conn, event.id)
                if current not in (None, "received"):
                    # Another delivery of this event, processed at the same time, finished it
                    # first (e.g. its signal reached the run, which then completed): its outcome
                    # stands. A "signalled" written after this one overwrites it (below).
                    return current
                row = store.get(conn, deposit["id"])
                outcome = ("workflow_closed" if row is None
                           else _settle_after_close(conn, event, row))
            store.set_event_outcome(conn, event.id, outcome, deposit["id"])
            return outcome

        outcome = await run_sync(run_in_transaction, engine, finish)
    return Received(received=True, duplicate=not new, outcome=outcome)


def _settle_after_close(conn: Connection, event: WebhookEvent, deposit: RowMapping) -> str:
    if deposit["status"] == DepositStatus.SUCCEEDED:
        return "workflow_closed"   # finished already (e.g. by polling): nothing to add
    payment = commands.payment_from_event_object(event.object)
    return str(commands.settle_after_close(conn, deposit["id"], payment, event.object,
                                           actor=ACTOR))


def _deposit_for(conn: Connection, event: WebhookEvent) -> RowMapping | None:
    """Our deposit for this event's object: by the metadata we set, else by payment intent."""
    deposit_id = event.metadata.get("settlepay_deposit_id")
    if deposit_id:
        return store.get(conn, deposit_id)
    object_id = event.object_id or ""
    if object_id.startswith("pi_"):
        return store.by_payment_intent(conn, object_id)
    return None
