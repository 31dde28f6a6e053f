"""/v1/markets/{market_id}: post a result version (starts settlement or resettlement), roll a
settlement back, read where a market's settlement stands.

A result is stored in one transaction (with audit and outbox, commands/settlement.py), then the
workflow `settle-<market>-v<version>` is started by name; posting the same version again
replays and makes sure the workflow runs (a start that failed after the commit is repaired by
the retry). HTTP only: the rules live in commands/settlement.py.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import Operator, ResultsWriter
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.problems import PROBLEM_RESPONSES, not_found, refused
from api.schemas.markets import (
    MarketResult,
    MarketRollback,
    MarketSettlement,
    ResultCreate,
    RollbackCreate,
)
from commands import settlement as commands
from settlepay import search_attributes, task_queues
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import settlements as store
from workflows.contracts.settlement import (
    WORKFLOW,
    MarketState,
    Mode,
    ResultStatus,
    SettlementRun,
    workflow_id,
)

router = APIRouter(prefix="/v1/markets", tags=["markets"], responses=PROBLEM_RESPONSES)


async def start_settlement(client: Client, settings: Settings, market_id: str, version: int,
                           mode: Mode) -> str:
    wf_id = workflow_id(market_id, version, mode)
    try:
        await client.start_workflow(
            WORKFLOW,
            SettlementRun(market_id=market_id, version=version, mode=mode,
                          batch_size=settings.settlement_batch_size),
            id=wf_id, task_queue=task_queues.SETTLEMENT,
            # A finished settlement is never run again under its id; a failed one may be.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(search_attributes.MARKET_ID, market_id)]))
    except WorkflowAlreadyStartedError:
        pass   # the same version again: one workflow, one settlement
    return wf_id


@router.post("/{market_id}/results", status_code=202, response_model=MarketResult,
             summary="Post a result version of a market")
async def post_result(market_id: str, body: ResultCreate, principal: ResultsWriter,
                      engine: EngineDep, settings: SettingsDep,
                      client: TemporalDep) -> MarketResult:
    selections = {sid: r.model_dump(exclude_none=True) for sid, r in body.selections.items()}
    try:
        result, replayed = await run_in_threadpool(
            run_in_transaction, engine, lambda conn: commands.record_result(
                conn, settings, market_id, body.version, selections, actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The result cannot be applied") from error
    if result["status"] == ResultStatus.CURRENT:
        wf_id = await start_settlement(client, settings, market_id, body.version, Mode.SETTLE)
    else:   # a replay of a version since corrected or rolled back: nothing to run
        wf_id = workflow_id(market_id, body.version, Mode.SETTLE)
    return MarketResult(**result, replayed=replayed, workflow_id=wf_id)


@router.post("/{market_id}/rollback", status_code=202, response_model=MarketRollback,
             summary="Roll a market's settlement back")
async def rollback(market_id: str, body: RollbackCreate, principal: Operator,
                   engine: EngineDep, settings: SettingsDep,
                   client: TemporalDep) -> MarketRollback:
    try:
        changed = await run_in_threadpool(
            run_in_transaction, engine, lambda conn: commands.record_rollback(
                conn, settings, market_id, body.version, actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The result cannot be applied") from error
    wf_id = await start_settlement(client, settings, market_id, body.version, Mode.ROLLBACK)
    return MarketRollback(market_id=market_id, version=body.version, replayed=not changed,
                          workflow_id=wf_id)


@router.get("/{market_id}/settlement", response_model=MarketSettlement,
            summary="Where a market's settlement stands")
def settlement(market_id: str, principal: ResultsWriter, engine: EngineDep) -> MarketSettlement:
    with engine.connect() as conn:
        view = store.summary(conn, market_id)
    if view["state"] == MarketState.OPEN and view["bets"]["total"] == 0:
        raise not_found("market", market_id)
    return MarketSettlement(**view)
