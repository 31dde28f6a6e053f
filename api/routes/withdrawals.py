"""/v1/withdrawals: start a withdrawal, submit its second-factor code, cancel it, an operator's
decision, and read it with its steps.

    POST /v1/withdrawals                 (Idempotency-Key required) -> workflow `withdrawal-<id>`
    POST /v1/withdrawals/{id}/2fa        {code} -> Temporal Update: 422 with attempts_left if wrong
         (also /{id}/second_factor)
    POST /v1/withdrawals/{id}/cancel     -> Temporal Update: 409 once the payout has begun
    POST /v1/withdrawals/{id}/review     operator: {decision: approve|reject} -> signal; on an
                                         approval, or on a payout waiting for review
    GET  /v1/withdrawals/{id}            state, steps and the refunds/payout legs
    GET  /v1/withdrawals                 a page, newest first (api/pagination.py): filters
                                         player, state, created[...], partner (operators)

The withdrawal id is derived from (API key, Idempotency-Key): a retried POST lands on the same
row and workflow, and a withdrawal that has finished is answered as it is, never run again.
HTTP in, command out: checks, holds and payouts are the workflow's business; the row, its audit
record and its event are written by commands/withdrawals.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import Connection, Engine, RowMapping
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api import workflow_start
from api.auth import Operator, Principal, WithdrawalsWriter, visible_player
from api.deps import UPDATE_WAIT, EngineDep, SettingsDep, TemporalDep, workflow_unavailable
from api.idempotency import IdempotencyKey, required_idempotency_key
from api.openapi_links import links, to
from api.pagination import ListParams, PartnerFilter, read_page, tenancy
from api.problems import PROBLEM_RESPONSES, Problem, not_found, refused
from api.schemas.review import ReviewIn
from api.schemas.withdrawals import (
    CancelIn,
    SecondFactorCodeIn,
    Withdrawal,
    WithdrawalAfterCode,
    WithdrawalCreate,
    WithdrawalList,
)
from api.workflow_start import start_money_workflow
from commands import withdrawals as commands
from commands.withdrawals import WithdrawalRefused
from settlepay import search_attributes as sa
from settlepay.db import run_in_transaction
from settlepay.observability import tracing
from store import withdrawals as store
from workflows.contracts.refusal import Refusal
from workflows.contracts.withdrawal import (
    WORKFLOW,
    CancelRequest,
    Decision,
    ReviewDecision,
    SecondFactorAnswer,
    SecondFactorCode,
    Signal,
    Update,
    WithdrawalRefusal,
    WithdrawalRequest,
    WithdrawalState,
    withdrawal_id_for,
)

router = APIRouter(prefix="/v1/withdrawals", tags=["withdrawals"], responses=PROBLEM_RESPONSES)

IdempotencyKeyRequired = Annotated[IdempotencyKey, Depends(required_idempotency_key)]
AWAITING_REVIEW = (WithdrawalState.AWAITING_APPROVAL, WithdrawalState.PAYOUT_REVIEW)


@router.post("", status_code=202, response_model=Withdrawal, response_model_exclude_unset=True,
             summary="Start a withdrawal",
             responses=links(
                 202, retrieve=to("GET", "/v1/withdrawals/{withdrawal_id}",
                                  withdrawal_id="$response.body#/id"),
                 second_factor=to("POST", "/v1/withdrawals/{withdrawal_id}/second_factor",
                                  withdrawal_id="$response.body#/id")))
async def create(body: WithdrawalCreate, response: Response, principal: WithdrawalsWriter,
                 idem: IdempotencyKeyRequired, engine: EngineDep, settings: SettingsDep,
                 client: TemporalDep) -> dict[str, Any]:
    if body.currency not in settings.supported_currencies:
        raise refused(Refusal(WithdrawalRefusal.CURRENCY_NOT_SUPPORTED,
                              f"Supported currencies: {', '.join(settings.supported_currencies)}."),
                      "Currency not supported")
    withdrawal_id = withdrawal_id_for(idem.operation_id)

    def work(conn: Connection) -> RowMapping:
        player = visible_player(conn, principal, body.player_id)
        row, _ = commands.create(conn, withdrawal_id=withdrawal_id, player=player,
                                 amount=body.amount, currency=body.currency,
                                 payout_destination=body.payout_destination,
                                 actor=principal.actor)
        return row

    try:
        row = await run_in_threadpool(run_in_transaction, engine, work)
    except WithdrawalRefused as error:
        raise refused(error.refusal, "The withdrawal was refused") from None
    if not WithdrawalState(row["state"]).final:
        # A finished withdrawal is answered as it is: its workflow never runs again.
        request = WithdrawalRequest(
            withdrawal_id=withdrawal_id, player_id=row["player_id"],
            partner_id=row["partner_id"], amount=row["amount"], currency=row["currency"],
            actor=principal.actor,
            ip_address=None if body.ip_address is None else str(body.ip_address),
            payout_destination=body.payout_destination,
            second_factor_timeout_seconds=settings.withdrawal_2fa_timeout_seconds,
            second_factor_max_attempts=settings.withdrawal_2fa_max_attempts,
            approval_threshold=settings.withdrawal_approval_threshold_minor,
            gateway_provider=settings.withdrawal_gateway_provider,
            payout_poll_seconds=settings.withdrawal_payout_poll_seconds)
        await start_money_workflow(client, WORKFLOW, request, workflow_id=row["workflow_id"],
                                   state_key=sa.WITHDRAWAL_STATE,
                                   state=WithdrawalState.CHECKING.search_value)
    response.headers["Location"] = f"/v1/withdrawals/{withdrawal_id}"
    return commands.payload(row)


@router.get("", response_model=WithdrawalList, response_model_exclude_unset=True,
            summary="List withdrawals",
            description="The withdrawals this key can see, newest first, without their steps "
                        "and legs.")
def list_withdrawals(
    query: ListParams, principal: WithdrawalsWriter, engine: EngineDep,
    partner: PartnerFilter = None,
    player: Annotated[str | None, Query(min_length=1, max_length=64,
                                        description="Only this player's withdrawals.")] = None,
    state: Annotated[WithdrawalState | None, Query(
        description="Only withdrawals in this state.")] = None,
) -> WithdrawalList:
    with engine.connect() as conn:
        page = read_page(conn, store.LISTING, query, tenancy(principal, partner),
                         filters={"player_id": player, "state": state})
    return WithdrawalList(object="list", url=router.prefix, has_more=page.has_more,
                          data=[Withdrawal.model_validate(commands.payload(row))
                                for row in page.rows])


@router.get("/{withdrawal_id}", response_model=Withdrawal,
            summary="Retrieve a withdrawal with its steps")
def retrieve(withdrawal_id: str, principal: WithdrawalsWriter,
             engine: EngineDep) -> dict[str, Any]:
    return _view(engine, principal, withdrawal_id)


@router.post("/{withdrawal_id}/2fa", response_model=WithdrawalAfterCode,
             summary="Submit the second-factor code")
@router.post("/{withdrawal_id}/second_factor", response_model=WithdrawalAfterCode,
             summary="Submit the second-factor code (same as /2fa)",
             responses=links(200, retrieve=to("GET", "/v1/withdrawals/{withdrawal_id}",
                                              withdrawal_id="$response.body#/id")))
async def submit_second_factor(withdrawal_id: str, body: SecondFactorCodeIn,
                               principal: WithdrawalsWriter, engine: EngineDep,
                               client: TemporalDep) -> dict[str, Any]:
    row = await run_in_threadpool(_visible, engine, principal, withdrawal_id)
    handle = client.get_workflow_handle(row["workflow_id"])
    # The Update belongs to the withdrawal's trace (linked to this request's).
    with tracing.continuing("withdrawal second factor",
                            await workflow_start.operation_traceparent(handle)):
        try:
            answer = await handle.execute_update(Update.SUBMIT_SECOND_FACTOR,
                                                 SecondFactorCode(body.code),
                                                 result_type=SecondFactorAnswer,
                                                 rpc_timeout=UPDATE_WAIT)
        except WorkflowUpdateFailedError as error:
            raise _update_problem(error) from None
        except RPCError as error:
            raise _closed_problem(error) from None
    view = await run_in_threadpool(_view, engine, principal, withdrawal_id)
    return {**view, "second_factor_verified": answer.verified}


@router.post("/{withdrawal_id}/cancel", response_model=Withdrawal,
             summary="Cancel a withdrawal before its payout")
async def cancel(withdrawal_id: str, principal: WithdrawalsWriter, engine: EngineDep,
                 client: TemporalDep, body: CancelIn | None = None) -> dict[str, Any]:
    row = await run_in_threadpool(_visible, engine, principal, withdrawal_id)
    handle = client.get_workflow_handle(row["workflow_id"])
    try:
        await handle.execute_update(Update.CANCEL,
                                    CancelRequest(principal.actor, body.reason if body else None),
                                    result_type=str, rpc_timeout=UPDATE_WAIT)
    except WorkflowUpdateFailedError as error:
        raise _update_problem(error) from None
    except RPCError as error:
        raise _closed_problem(error) from None
    return await run_in_threadpool(_view, engine, principal, withdrawal_id)


@router.post("/{withdrawal_id}/review", status_code=202, response_model=Withdrawal,
             summary="Approve or reject (operator): an approval, or a payout waiting for review")
async def review(withdrawal_id: str, body: ReviewIn, principal: Operator, engine: EngineDep,
                 client: TemporalDep) -> dict[str, Any]:
    """The decision goes to the workflow, which records (and audits) it once it takes it: a
    withdrawal that is not waiting for a decision gets none, and nothing is written."""
    row = await run_in_threadpool(_visible, engine, principal, withdrawal_id)
    if row["state"] not in AWAITING_REVIEW:
        raise refused(Refusal(WithdrawalRefusal.NOT_AWAITING_REVIEW,
                              f"The withdrawal is {row['state']}."), "No review pending")
    await client.get_workflow_handle(row["workflow_id"]).signal(
        Signal.REVIEW, ReviewDecision(Decision(body.decision), principal.actor, body.note))
    return await run_in_threadpool(_view, engine, principal, withdrawal_id)


# --- helpers ---------------------------------------------------------------------------------

def _partner_filter(principal: Principal) -> str | None:
    return None if principal.is_operator else principal.partner_id


def _visible(engine: Engine, principal: Principal, withdrawal_id: str) -> RowMapping:
    with engine.connect() as conn:
        row = store.get(conn, withdrawal_id, partner_id=_partner_filter(principal))
    if row is None:
        raise not_found("withdrawal", withdrawal_id)
    return row


def _view(engine: Engine, principal: Principal, withdrawal_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        view = commands.view(conn, withdrawal_id, partner_id=_partner_filter(principal))
    if view is None:
        raise not_found("withdrawal", withdrawal_id)
    return view


# Titles of the refusals an update answers (their statuses: api/problems.py STATUS_BY_CODE).
_UPDATE_TITLES = {
    WithdrawalRefusal.SECOND_FACTOR_INVALID: "Wrong code",
    WithdrawalRefusal.SECOND_FACTOR_FAILED: "Wrong code: withdrawal cancelled",
    WithdrawalRefusal.SECOND_FACTOR_MALFORMED: "Malformed code",
    WithdrawalRefusal.SECOND_FACTOR_NOT_EXPECTED: "No code expected",
    WithdrawalRefusal.NOT_CANCELLABLE: "Too late to cancel",
}


def _update_problem(error: WorkflowUpdateFailedError) -> Problem:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type in _UPDATE_TITLES:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return refused(Refusal(cause.type, cause.message), _UPDATE_TITLES[cause.type],
                       extensions=details)
    raise error


def _closed_problem(error: RPCError) -> Problem:
    if error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return workflow_unavailable()
    if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
        return refused(Refusal(WithdrawalRefusal.FINISHED,
                               "The withdrawal has finished; it takes no more requests."),
                       "The withdrawal is finished")
    raise error
