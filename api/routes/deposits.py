"""/v1/deposits: start a deposit (202, the workflow does the rest), read one, list them
(api/pagination.py: newest first; filters player, status, created[...], partner for operators),
close one waiting in review as failed (operators).

POST requires an Idempotency-Key: the deposit id is derived from (API key, Idempotency-Key), so
every retry, even one after a crash between the insert and the workflow start, lands on the same
deposit row and the same workflow `deposit-<id>`. The workflow runs once: a retry after it has
run (or while it runs) is answered with the deposit as it is (api/workflow_start.py).
HTTP in, command out: the row, its audit record and its event are written by
commands/deposits.py; the gates, the gateway and the ledger are the workflow's business.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import Connection, RowMapping

from api.auth import DepositsWriter, Operator, visible_player
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.idempotency import IdempotencyKey, required_idempotency_key
from api.openapi_links import links, to
from api.pagination import ListParams, PartnerFilter, read_page, tenancy
from api.problems import PROBLEM_RESPONSES, refused
from api.schemas.deposits import Deposit, DepositCreate, DepositList, DepositReviewClose
from api.threads import run_sync
from api.workflow_start import start_money_workflow
from commands import deposits as commands
from settlepay import search_attributes as sa
from settlepay.db import run_in_transaction
from store import deposits as store
from workflows.contracts.deposit import (
    WORKFLOW,
    DepositRefusal,
    DepositRequest,
    DepositStatus,
    deposit_id_for,
)
from workflows.contracts.refusal import Refusal

router = APIRouter(prefix="/v1/deposits", tags=["deposits"], responses=PROBLEM_RESPONSES)

IdempotencyKeyRequired = Annotated[IdempotencyKey, Depends(required_idempotency_key)]


@router.post("", status_code=202, response_model=Deposit, summary="Start a deposit",
             responses=links(202, retrieve=to("GET", "/v1/deposits/{deposit_id}",
                                              deposit_id="$response.body#/id")))
async def create(body: DepositCreate, response: Response, principal: DepositsWriter,
                 idem: IdempotencyKeyRequired, engine: EngineDep, settings: SettingsDep,
                 client: TemporalDep) -> Deposit:
    deposit_id = deposit_id_for(idem.operation_id)

    def work(conn: Connection) -> RowMapping:
        player = visible_player(conn, principal, body.player_id)
        row, _ = commands.create(conn, deposit_id=deposit_id, player=player, amount=body.amount,
                                 currency=body.currency, payment_method=body.payment_method,
                                 actor=principal.actor)
        return row

    row = await run_sync(run_in_transaction, engine, work)
    if row["status"] == DepositStatus.PENDING:
        # Past pending, the workflow has run: the deposit is answered as it is.
        request = DepositRequest(
            deposit_id=deposit_id, player_id=row["player_id"], partner_id=row["partner_id"],
            amount=row["amount"], currency=row["currency"],
            payment_method=row["payment_method"], actor=principal.actor,
            ip_address=None if body.ip_address is None else str(body.ip_address),
            return_url=body.return_url or settings.deposit_return_url,
            webhook_wait_seconds=settings.deposit_webhook_wait_seconds,
            poll_interval_seconds=settings.deposit_poll_interval_seconds,
            timeout_seconds=settings.deposit_timeout_seconds,
            processing_limit_seconds=settings.deposit_processing_limit_seconds)
        await start_money_workflow(client, WORKFLOW, request, workflow_id=row["workflow_id"],
                                   state_key=sa.PAYMENT_STATE,
                                   state=DepositStatus.PENDING.search_value)
    response.headers["Location"] = f"/v1/deposits/{deposit_id}"
    return Deposit.model_validate(commands.deposit_payload(row))


@router.get("", response_model=DepositList, summary="List deposits",
            description="The deposits this key can see, newest first.")
def list_deposits(
    query: ListParams, principal: DepositsWriter, engine: EngineDep,
    partner: PartnerFilter = None,
    player: Annotated[str | None, Query(min_length=1, max_length=64,
                                        description="Only this player's deposits.")] = None,
    status: Annotated[DepositStatus | None, Query(
        description="Only deposits in this status.")] = None,
) -> DepositList:
    with engine.connect() as conn:
        page = read_page(conn, store.LISTING, query, tenancy(principal, partner),
                         filters={"player_id": player, "status": status})
    return DepositList(url=router.prefix, has_more=page.has_more,
                       data=[Deposit.model_validate(commands.deposit_payload(row))
                             for row in page.rows])


@router.get("/{deposit_id}", response_model=Deposit, summary="Retrieve a deposit")
def retrieve(deposit_id: str, principal: DepositsWriter, engine: EngineDep) -> Deposit:
    with engine.connect() as conn:
        row = store.get(conn, deposit_id,
                        partner_id=None if principal.is_operator else principal.partner_id)
    if row is None:
        raise refused(Refusal(DepositRefusal.DEPOSIT_NOT_FOUND,
                              f"There is no deposit {deposit_id!r}."), "No such deposit")
    return Deposit.model_validate(commands.deposit_payload(row))


@router.post("/{deposit_id}/review", response_model=Deposit,
             summary="Close a deposit waiting in review as failed (operators)",
             description="For a deposit the gateway gave no verdict on (status `review`): the "
                         "operator found no money moved, and the deposit fails with "
                         "`closed_in_review`. A success the gateway reports later is still "
                         "credited. Anything but `review`: 409 `deposit_not_in_review`.")
def close_review(deposit_id: str, body: DepositReviewClose, principal: Operator,
                 engine: EngineDep) -> Deposit:
    try:
        row = run_in_transaction(engine, lambda conn: commands.close_review(
            conn, deposit_id, reason=body.reason, actor=principal.actor))
    except commands.DepositRefused as error:
        raise refused(error.refusal, "The deposit cannot be closed") from error
    return Deposit.model_validate(commands.deposit_payload(row))
