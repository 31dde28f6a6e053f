"""/v1/markets/{market_id}: post a result version (starts settlement or resettlement), roll a
settlement back, read where a market's settlement stands.

A result is stored in one transaction (with audit and outbox), then the workflow
`settle-<market>-v<version>` is started; posting the same version again replays and makes sure
the workflow runs (a start that failed after the commit is repaired by the retry). HTTP only.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import Principal, require
from api.deps import get_engine, get_settings, get_temporal
from api.problems import PROBLEM_RESPONSES, Problem, not_found
from api.scopes import Scope
from settlepay import search_attributes, task_queues
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import settlements
from workflows.settlement import MarketSettlementWorkflow, SettlementRun, workflow_id

router = APIRouter(prefix="/v1/markets", tags=["markets"], responses=PROBLEM_RESPONSES)

Factor = StrictStr | StrictInt   # "0.5", "1/3", 0 or 1: never a float

REFUSAL_STATUS = {"invalid_result": 422, "result_version_stale": 409, "result_version_conflict": 409,
                  "correction_window_closed": 409, "result_not_current": 409, "result_not_found": 404}


class SelectionResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result: Literal["won", "lost"]
    void_factor: Factor = 0
    dead_heat_factor: Factor = 1
    position: StrictInt | None = Field(None, ge=1)
    tied: StrictInt = Field(1, ge=1)
    rule4: Factor = 0


class ResultCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=1, le=2**31 - 1)
    selections: dict[str, SelectionResultIn] = Field(min_length=1, max_length=500)


class RollbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=1, le=2**31 - 1)


def _refused(error: settlements.ResultRefused) -> Problem:
    return Problem(REFUSAL_STATUS.get(error.code, 409), error.code, "The result cannot be applied", error.detail)


async def start_settlement(client: Client, settings: Settings, market_id: str, version: int, mode: str) -> str:
    wf_id = workflow_id(market_id, version, mode)
    try:
        await client.start_workflow(
            MarketSettlementWorkflow.run,
            SettlementRun(market_id=market_id, version=version, mode=mode,
                          batch_size=settings.settlement_batch_size),
            id=wf_id, task_queue=task_queues.SETTLEMENT,
            # A finished settlement is never run again under its id; a failed one may be.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([SearchAttributePair(search_attributes.MARKET_ID, market_id)]))
    except WorkflowAlreadyStartedError:
        pass   # the same version again: one workflow, one settlement
    return wf_id


@router.post("/{market_id}/results", status_code=202, summary="Post a result version of a market")
async def post_result(market_id: str, body: ResultCreate,
                      principal: Principal = Depends(require(Scope.RESULTS_WRITE)),
                      engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
                      client: Client = Depends(get_temporal)) -> dict:
    selections = {sid: r.model_dump(exclude_none=True) for sid, r in body.selections.items()}
    try:
        result, replayed = await run_in_threadpool(run_in_transaction, engine, lambda conn: settlements.record_result(
            conn, settings, market_id, body.version, selections, actor=principal.actor))
    except settlements.ResultRefused as error:
        raise _refused(error) from error
    if result["status"] == "current":
        wf_id = await start_settlement(client, settings, market_id, body.version, settlements.SETTLE)
    else:   # a replay of a version since corrected or rolled back: nothing to run
        wf_id = workflow_id(market_id, body.version, settlements.SETTLE)
    return {"object": "market_result", **result, "replayed": replayed, "workflow_id": wf_id}


@router.post("/{market_id}/rollback", status_code=202, summary="Roll a market's settlement back")
async def rollback(market_id: str, body: RollbackCreate,
                   principal: Principal = Depends(require(Scope.OPERATOR_REVIEW)),
                   engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
                   client: Client = Depends(get_temporal)) -> dict:
    try:
        changed = await run_in_threadpool(run_in_transaction, engine, lambda conn: settlements.record_rollback(
            conn, settings, market_id, body.version, actor=principal.actor))
    except settlements.ResultRefused as error:
        raise _refused(error) from error
    wf_id = await start_settlement(client, settings, market_id, body.version, settlements.ROLLBACK)
    return {"object": "market_rollback", "market_id": market_id, "version": body.version,
            "replayed": not changed, "workflow_id": wf_id}


@router.get("/{market_id}/settlement", summary="Where a market's settlement stands")
def settlement(market_id: str, principal: Principal = Depends(require(Scope.RESULTS_WRITE)),
               engine: Engine = Depends(get_engine)) -> dict:
    with engine.connect() as conn:
        view = settlements.summary(conn, market_id)
    if view["state"] == "open" and view["bets"]["total"] == 0:
        raise not_found("market", market_id)
    return {"object": "market_settlement", **view}
