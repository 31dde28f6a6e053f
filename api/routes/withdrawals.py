"""/v1/withdrawals: start a withdrawal, submit its second-factor code, cancel it, an operator's
approval, and read it with its steps.

    POST /v1/withdrawals                 (Idempotency-Key required) -> workflow `withdrawal-<id>`
    POST /v1/withdrawals/{id}/2fa        {code} -> Temporal Update: 422 with attempts_left if wrong
    POST /v1/withdrawals/{id}/cancel     -> Temporal Update: 409 once the payout has begun
    POST /v1/withdrawals/{id}/review     operator: {decision: approve|reject} -> signal
    GET  /v1/withdrawals/{id}            state, steps and the refunds/payout legs

The withdrawal id is derived from (API key, Idempotency-Key): a retried POST lands on the same
row and workflow. HTTP in, command out: checks, holds and payouts are the workflow's business.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import audit
import outbox
from activities.withdrawal import (
    ApprovalDecision,
    CancelRequest,
    SecondFactorAnswer,
    SecondFactorCode,
    WithdrawalRequest,
)
from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings, get_temporal
from api.idempotency import IdempotencyKey, required_idempotency_key
from api.problems import PROBLEM_RESPONSES, Problem, not_found
from api.schemas.review import ReviewIn
from api.scopes import Scope
from api.workflow_start import start_money_workflow
from settlepay import search_attributes as sa
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import withdrawals as store

router = APIRouter(prefix="/v1/withdrawals", tags=["withdrawals"], responses=PROBLEM_RESPONSES)

WORKFLOW = "Withdrawal"   # workflows/withdrawal.py, by name


class WithdrawalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    player_id: str = Field(min_length=1, max_length=64)
    amount: StrictInt = Field(gt=0, le=10**12, description="Minor units (e.g. cents); an integer.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    ip_address: IPv4Address | IPv6Address | None = Field(
        None, description="The player's IP address, checked against the geolocation on record.")
    payout_destination: str | None = Field(None, max_length=255, pattern=r"^[A-Za-z0-9_]+$",
                                           description="Gateway bank account for the payout part.")


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: str = Field(pattern=r"^[0-9]{6}$", description="TOTP or the one-time code sent to the player.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


@router.post("", status_code=202, summary="Start a withdrawal")
async def create(body: WithdrawalCreate, response: Response,
                 principal: Principal = Depends(require(Scope.WITHDRAWALS_WRITE)),
                 idem: IdempotencyKey = Depends(required_idempotency_key),
                 engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
                 client: Client = Depends(get_temporal)) -> dict[str, Any]:
    if body.currency not in settings.supported_currencies:
        raise Problem(422, "currency_not_supported", "Currency not supported",
                      f"Supported currencies: {', '.join(settings.supported_currencies)}.")
    withdrawal_id = store.withdrawal_id_for(idem.operation_id)

    def record(conn):  # noqa: ANN001, ANN202
        player = visible_player(conn, principal, body.player_id)
        row, created = store.insert(conn, withdrawal_id=withdrawal_id, player_id=player["id"],
                                    partner_id=player["partner_id"], amount=body.amount,
                                    currency=body.currency)
        if created:
            store.add_step(conn, withdrawal_id, "requested", "accepted", {"actor": principal.actor})
            audit.record(conn, actor=principal.actor, action="withdrawal.created", subject_type="withdrawal",
                         subject_id=withdrawal_id, before=None, after=store.as_record(row))
            outbox.emit(conn, event_type="withdrawal.created", aggregate_type="withdrawal",
                        aggregate_id=withdrawal_id, payload=store.resource(row),
                        player_id=row["player_id"], partner_id=row["partner_id"])
        return row

    row = await run_in_threadpool(run_in_transaction, engine, record)
    request = WithdrawalRequest(
        withdrawal_id=withdrawal_id, player_id=row["player_id"], partner_id=row["partner_id"],
        amount=row["amount"], currency=row["currency"], actor=principal.actor,
        ip_address=None if body.ip_address is None else str(body.ip_address),
        payout_destination=body.payout_destination,
        two_factor_timeout_seconds=settings.withdrawal_2fa_timeout_seconds,
        two_factor_max_attempts=settings.withdrawal_2fa_max_attempts,
        approval_threshold=settings.withdrawal_approval_threshold_minor,
        gateway_provider=settings.withdrawal_gateway_provider,
        payout_poll_seconds=settings.withdrawal_payout_poll_seconds)
    await start_money_workflow(client, WORKFLOW, request, workflow_id=row["workflow_id"],
                               state_key=sa.WITHDRAWAL_STATE, state="CHECKING")
    response.headers["Location"] = f"/v1/withdrawals/{withdrawal_id}"
    return store.resource(row)


@router.get("/{withdrawal_id}", summary="Retrieve a withdrawal with its steps")
def retrieve(withdrawal_id: str, principal: Principal = Depends(require(Scope.WITHDRAWALS_WRITE)),
             engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    with engine.connect() as conn:
        return _view(conn, principal, withdrawal_id)


@router.post("/{withdrawal_id}/2fa", summary="Submit the second-factor code")
async def submit_code(withdrawal_id: str, body: CodeIn,
                      principal: Principal = Depends(require(Scope.WITHDRAWALS_WRITE)),
                      engine: Engine = Depends(get_engine),
                      client: Client = Depends(get_temporal)) -> dict[str, Any]:
    row = await run_in_threadpool(_visible, engine, principal, withdrawal_id)
    handle = client.get_workflow_handle(row["workflow_id"])
    try:
        answer = await handle.execute_update("submit_second_factor", SecondFactorCode(body.code),
                                             result_type=SecondFactorAnswer)
    except WorkflowUpdateFailedError as error:
        raise _update_problem(error) from None
    except RPCError as error:
        raise _closed_problem(error) from None
    view = await run_in_threadpool(_view_with_engine, engine, principal, withdrawal_id)
    return {**view, "second_factor_verified": answer.verified}


@router.post("/{withdrawal_id}/cancel", summary="Cancel a withdrawal before its payout")
async def cancel(withdrawal_id: str, body: CancelIn | None = None,
                 principal: Principal = Depends(require(Scope.WITHDRAWALS_WRITE)),
                 engine: Engine = Depends(get_engine),
                 client: Client = Depends(get_temporal)) -> dict[str, Any]:
    row = await run_in_threadpool(_visible, engine, principal, withdrawal_id)
    handle = client.get_workflow_handle(row["workflow_id"])
    try:
        await handle.execute_update("cancel", CancelRequest(principal.actor, body.reason if body else None),
                                    result_type=str)
    except WorkflowUpdateFailedError as error:
        raise _update_problem(error) from None
    except RPCError as error:
        raise _closed_problem(error) from None
    return await run_in_threadpool(_view_with_engine, engine, principal, withdrawal_id)


@router.post("/{withdrawal_id}/review", status_code=202, summary="Approve or reject (operator)")
async def review(withdrawal_id: str, body: ReviewIn,
                 principal: Principal = Depends(require(Scope.OPERATOR_REVIEW)),
                 engine: Engine = Depends(get_engine),
                 client: Client = Depends(get_temporal)) -> dict[str, Any]:
    def record(conn):  # noqa: ANN001, ANN202
        row = store.get(conn, withdrawal_id, for_update=True,
                        partner_id=None if principal.is_operator else principal.partner_id)
        if row is None:
            raise not_found("withdrawal", withdrawal_id)
        if row["state"] != store.AWAITING_APPROVAL:
            raise Problem(409, "withdrawal_not_awaiting_approval", "No approval pending",
                          f"The withdrawal is {row['state']}.")
        audit.record(conn, actor=principal.actor, action=f"withdrawal.review.{body.decision}",
                     subject_type="withdrawal", subject_id=withdrawal_id, before=store.as_record(row),
                     after={"decision": body.decision, "note": body.note})
        return row

    row = await run_in_threadpool(run_in_transaction, engine, record)
    await client.get_workflow_handle(row["workflow_id"]).signal(
        "review", ApprovalDecision(body.decision, principal.actor, body.note))
    return await run_in_threadpool(_view_with_engine, engine, principal, withdrawal_id)


# --- helpers ---------------------------------------------------------------------------------

def _visible(engine: Engine, principal: Principal, withdrawal_id: str):  # noqa: ANN202
    with engine.connect() as conn:
        row = store.get(conn, withdrawal_id, partner_id=None if principal.is_operator else principal.partner_id)
    if row is None:
        raise not_found("withdrawal", withdrawal_id)
    return row


def _view(conn, principal: Principal, withdrawal_id: str) -> dict[str, Any]:  # noqa: ANN001
    row = store.get(conn, withdrawal_id, partner_id=None if principal.is_operator else principal.partner_id)
    if row is None:
        raise not_found("withdrawal", withdrawal_id)
    return store.resource(row, store.steps(conn, withdrawal_id), store.payouts(conn, withdrawal_id))


def _view_with_engine(engine: Engine, principal: Principal, withdrawal_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return _view(conn, principal, withdrawal_id)


# Update refusals (validator) and failures (handler) -> problems the client can act on.
_UPDATE_PROBLEMS = {
    "second_factor_invalid": (422, "Wrong code"),
    "second_factor_failed": (422, "Wrong code: withdrawal cancelled"),
    "second_factor_malformed": (422, "Malformed code"),
    "second_factor_not_expected": (409, "No code expected"),
    "withdrawal_not_cancellable": (409, "Too late to cancel"),
}


def _update_problem(error: WorkflowUpdateFailedError) -> Problem:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type in _UPDATE_PROBLEMS:
        status, title = _UPDATE_PROBLEMS[cause.type]
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return Problem(status, cause.type, title, cause.message, extensions=details)
    raise error


def _closed_problem(error: RPCError) -> Problem:
    if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
        return Problem(409, "withdrawal_finished", "The withdrawal is finished",
                       "The withdrawal has finished; it takes no more requests.")
    raise error
