"""KYC over HTTP: start or continue a player's KYC case, an operator's review decision, and the
provider's webhook ingress.

    POST /v1/players/{id}/kyc        a document -> workflow `kyc-<player>` (signal-with-start)
    POST /v1/kyc/{player}/review     operator: approve | reject a possible sanctions match
    POST /v1/webhooks/kyc            the provider's verdict (Standard Webhooks signature)

The player's KYC status and history are in GET /v1/players/{id} (`kyc`). HTTP in, signal out:
the age check, the screening and the verdicts are the workflow's business.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

import audit
from activities.kyc import KycDocument, KycRequest, ReviewDecision, Verdict
from adapters.kyc import WebhookSignatureInvalid, verify_webhook
from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings, get_temporal
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.review import ReviewIn
from api.scopes import Scope
from settlepay import search_attributes as sa
from settlepay import task_queues
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import kyc as store

router = APIRouter(tags=["kyc"], responses=PROBLEM_RESPONSES)

WORKFLOW = "Kyc"   # workflows/kyc.py, by name: the API never loads workflow code


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: Literal["passport", "driving_licence", "id_card"]
    number: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class KycStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: DocumentIn


@router.post("/v1/players/{player_id}/kyc", status_code=202, summary="Start KYC or send another document")
async def start_kyc(player_id: str, body: KycStart,
                    principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
                    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
                    client: Client = Depends(get_temporal)) -> dict[str, Any]:
    def current(conn):  # noqa: ANN001, ANN202
        visible_player(conn, principal, player_id)
        return store.get(conn, player_id)

    case = await run_in_threadpool(run_in_transaction, engine, current)
    if case is not None:
        if case["state"] == store.VERIFIED:
            raise Problem(409, "kyc_already_verified", "KYC already verified",
                          "The player's identity is verified; nothing to send.")
        if case["state"] == store.REJECTED:
            raise Problem(409, "kyc_rejected", "KYC rejected",
                          f"The player's KYC was rejected ({case['reason_code']}); contact an operator.")
        if case["state"] not in (store.RESUBMISSION_REQUIRED, store.EXPIRED):
            raise Problem(409, "kyc_in_progress", "KYC in progress",
                          f"The KYC case is {case['state']}; wait for its outcome.")
    request = KycRequest(player_id=player_id, actor=principal.actor,
                         document_timeout_seconds=settings.kyc_document_timeout_seconds,
                         max_document_attempts=settings.kyc_max_document_attempts)
    document = KycDocument(body.document.type, body.document.number, body.document.country)
    # Signal-with-start: a new case starts with its first document; a running case waiting for
    # another document (RETRY) receives it.
    await client.start_workflow(
        WORKFLOW, request, id=store.workflow_id_for(player_id), task_queue=task_queues.MAIN,
        start_signal="submit_document", start_signal_args=[document],
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.PLAYER_ID, player_id),
                                                 SearchAttributePair(sa.KYC_STATE, "PENDING")]))
    return await run_in_threadpool(_summary, engine, player_id)


@router.post("/v1/kyc/{player_id}/review", status_code=202, summary="Decide a KYC review (operator)")
async def review_kyc(player_id: str, body: ReviewIn,
                     principal: Principal = Depends(require(Scope.OPERATOR_REVIEW)),
                     engine: Engine = Depends(get_engine),
                     client: Client = Depends(get_temporal)) -> dict[str, Any]:
    def record(conn):  # noqa: ANN001, ANN202
        visible_player(conn, principal, player_id)
        case = store.get(conn, player_id, for_update=True)
        if case is None or case["state"] != store.REVIEW:
            raise Problem(409, "kyc_not_in_review", "No review pending",
                          f"The player's KYC case is {case['state'] if case else 'not started'}.")
        # The operator's decision is evidence in itself; the workflow records the outcome.
        audit.record(conn, actor=principal.actor, action=f"kyc.review.{body.decision}",
                     subject_type="player", subject_id=player_id, before=store.as_record(case),
                     after={"decision": body.decision, "note": body.note})

    await run_in_threadpool(run_in_transaction, engine, record)
    await client.get_workflow_handle(store.workflow_id_for(player_id)).signal(
        "review", ReviewDecision(body.decision, principal.actor, body.note))
    return await run_in_threadpool(_summary, engine, player_id)


@router.post("/v1/webhooks/kyc", summary="KYC provider webhook (signed)", include_in_schema=True)
async def kyc_webhook(request: Request, settings: Settings = Depends(get_settings),
                      client: Client = Depends(get_temporal)) -> dict[str, Any]:
    body = await request.body()
    try:
        verdict = verify_webhook(settings.kyc_webhook_secret, body, request.headers)
    except WebhookSignatureInvalid:
        raise Problem(400, "webhook_signature_invalid", "Invalid webhook signature",
                      "The webhook signature is missing, wrong or too old.") from None
    workflow_id = verdict.reference.split(":doc:", 1)[0]
    if not workflow_id.startswith("kyc-"):
        return {"received": True, "outcome": "unknown_reference"}
    try:
        await client.get_workflow_handle(workflow_id).signal("document_result", Verdict(
            verdict.event_id, verdict.check_id, verdict.reference, verdict.result, verdict.next,
            verdict.reason))
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        return {"received": True, "outcome": "workflow_closed"}   # acknowledged: nothing to do
    return {"received": True, "outcome": "signalled"}


def _summary(engine: Engine, player_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return {"object": "kyc", "player_id": player_id, **store.kyc_summary(conn, player_id)}
