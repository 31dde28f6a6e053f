"""KYC over HTTP: start or continue a player's KYC case, an operator's review decision, and the
provider's webhook ingress.

    POST /v1/players/{id}/kyc        a document -> workflow `kyc-<player>` (signal-with-start)
    POST /v1/kyc/{player}/review     operator: approve | reject a possible sanctions match
                                     (the `decide_review` update: 409 unless the case waits)
    POST /v1/webhooks/kyc            the provider's verdict (Standard Webhooks signature),
                                     signalled to the run that sent the document

The player's KYC status and history are in GET /v1/players/{id} (`kyc`). HTTP in, signal or
update out: the age check, the screening, the verdicts and every record of them (audit
included) are the workflow's business (workflows/kyc.py, commands/kyc.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection, Engine, RowMapping
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from adapters.kyc import DocumentVerdict, WebhookSignatureInvalid, verify_webhook
from api.auth import Operator, PlayersWriter, Principal, visible_player
from api.deps import UPDATE_WAIT, EngineDep, SettingsDep, TemporalDep, workflow_unavailable
from api.problems import PROBLEM_RESPONSES, Problem, refused
from api.schemas.kyc import KycCase, KycStart, WebhookReceipt
from api.schemas.review import ReviewIn
from settlepay import search_attributes as sa
from settlepay import task_queues
from settlepay.db import run_in_transaction
from store import kyc as store
from workflows.contracts.kyc import (
    WORKFLOW,
    Decision,
    DocumentResult,
    KycDocument,
    KycRefusal,
    KycRequest,
    KycState,
    NextStep,
    ReviewDecision,
    Signal,
    Update,
    Verdict,
    reference_owner,
    workflow_id,
)
from workflows.contracts.refusal import Refusal

router = APIRouter(tags=["kyc"], responses=PROBLEM_RESPONSES)


@router.post("/v1/players/{player_id}/kyc", status_code=202, response_model=KycCase,
             summary="Start KYC or send another document")
async def start_kyc(player_id: str, body: KycStart, principal: PlayersWriter, engine: EngineDep,
                    settings: SettingsDep, client: TemporalDep) -> KycCase:
    case = await run_in_threadpool(_visible_case, engine, principal, player_id)
    refusal = _refusal_to_start(case)
    if refusal is not None:
        raise refused(refusal, "The KYC case takes no document now")
    request = KycRequest(player_id=player_id, actor=principal.actor,
                         document_timeout_seconds=settings.kyc_document_timeout_seconds,
                         max_document_attempts=settings.kyc_max_document_attempts,
                         verdict_poll_seconds=settings.kyc_verdict_poll_seconds)
    document = KycDocument(body.document.type, body.document.number, body.document.country)
    # Signal-with-start: a new case (or one reopened after `expired`: a new run) starts with its
    # first document; a running case waiting for another document (RETRY) receives it.
    await client.start_workflow(
        WORKFLOW, request, id=workflow_id(player_id), task_queue=task_queues.MAIN,
        start_signal=Signal.SUBMIT_DOCUMENT, start_signal_args=[document],
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(sa.PLAYER_ID, player_id),
            SearchAttributePair(sa.KYC_STATE, KycState.PENDING.search_value)]))
    return await run_in_threadpool(_case, engine, player_id)


@router.post("/v1/kyc/{player_id}/review", status_code=202, response_model=KycCase,
             summary="Decide a KYC review (operator)")
async def review_kyc(player_id: str, body: ReviewIn, principal: Operator, engine: EngineDep,
                     client: TemporalDep) -> KycCase:
    case = await run_in_threadpool(_visible_case, engine, principal, player_id)
    if case is None or case["state"] != KycState.REVIEW:
        raise refused(_not_in_review(case), "No review pending")
    decision = ReviewDecision(Decision(body.decision), principal.actor, body.note)
    # The workflow takes the decision only while it waits for one (its validator), then records
    # it with the audit record; a decision it refuses leaves nothing behind.
    try:
        await client.get_workflow_handle(workflow_id(player_id)).execute_update(
            Update.REVIEW, decision, rpc_timeout=UPDATE_WAIT)
    except WorkflowUpdateFailedError as error:
        raise refused(Refusal.of(error) or _not_in_review(case), "No review pending") from None
    except RPCError as error:
        if error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise workflow_unavailable() from None
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        raise refused(_not_in_review(case), "No review pending") from None
    return await run_in_threadpool(_case, engine, player_id)


@router.post("/v1/webhooks/kyc", response_model=WebhookReceipt,
             summary="KYC provider webhook (signed)")
async def kyc_webhook(request: Request, settings: SettingsDep,
                      client: TemporalDep) -> WebhookReceipt:
    body = await request.body()
    try:
        verdict = verify_webhook(settings.kyc_webhook_secret, body, request.headers)
    except WebhookSignatureInvalid:
        raise Problem(400, "webhook_signature_invalid", "Invalid webhook signature",
                      "The webhook signature is missing, wrong or too old.") from None
    signal = _verdict_signal(verdict)
    if signal is None:
        raise Problem(400, "webhook_payload_invalid", "Invalid webhook payload",
                      "The signed verdict's fields are not ones the provider sends.")
    owner = reference_owner(signal.reference)
    if owner is None:
        return WebhookReceipt(outcome="unknown_reference")
    # Addressed to the run that sent the document: a verdict for an earlier run's document (a
    # case reopened after `expired`) finds that run closed and is acknowledged, never delivered
    # to the new run. Legacy references (no run id) go to the current run, which ignores a
    # reference it did not send.
    handle = client.get_workflow_handle(owner.workflow_id, run_id=owner.run_id)
    try:
        await handle.signal(Signal.DOCUMENT_RESULT, signal)
    except RPCError as error:
        if error.status == RPCStatusCode.INVALID_ARGUMENT:
            # An id Temporal cannot address (reference_owner already leaves out run ids that
            # are not UUIDs): no run of ours sent it. Acknowledged, never a 500.
            return WebhookReceipt(outcome="unknown_reference")
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        return WebhookReceipt(outcome="workflow_closed")   # acknowledged: nothing to do
    return WebhookReceipt(outcome="signalled")


def _verdict_signal(verdict: DocumentVerdict) -> Verdict | None:
    """The verdict as the workflow's signal; None when a field is not what the provider sends
    (a result or next step outside the contract's, a text field that is not text)."""
    texts = (verdict.check_id, verdict.reference, verdict.result)
    if not all(isinstance(value, str) for value in texts) or not all(
            value is None or isinstance(value, str) for value in (verdict.next, verdict.reason)):
        return None
    try:
        return Verdict(verdict.event_id, verdict.check_id, verdict.reference,
                       DocumentResult(verdict.result),
                       None if verdict.next is None else NextStep(verdict.next), verdict.reason)
    except ValueError:
        return None


def _visible_case(engine: Engine, principal: Principal, player_id: str) -> RowMapping | None:
    """The player's case (None before the first document); 404 for a player the key may not
    see."""
    def read(conn: Connection) -> RowMapping | None:
        visible_player(conn, principal, player_id)
        return store.get(conn, player_id)
    return run_in_transaction(engine, read)


def _refusal_to_start(case: RowMapping | None) -> Refusal | None:
    if case is None:
        return None
    state = KycState(case["state"])
    if state == KycState.VERIFIED:
        return Refusal(KycRefusal.ALREADY_VERIFIED,
                       "The player's identity is verified; nothing to send.")
    if state == KycState.REJECTED:
        return Refusal(KycRefusal.REJECTED, f"The player's KYC was rejected "
                                            f"({case['reason_code']}); contact an operator.")
    if state not in (KycState.RESUBMISSION_REQUIRED, KycState.EXPIRED):
        return Refusal(KycRefusal.IN_PROGRESS, f"The KYC case is {state}; wait for its outcome.")
    return None


def _not_in_review(case: RowMapping | None) -> Refusal:
    return Refusal(KycRefusal.NOT_IN_REVIEW, f"The player's KYC case is "
                                             f"{case['state'] if case else 'not started'}.")


def _case(engine: Engine, player_id: str) -> KycCase:
    with engine.connect() as conn:
        summary: dict[str, Any] = store.kyc_summary(conn, player_id)
    return KycCase(player_id=player_id, **summary)
