"""/v1/reconciliation: payment reconciliation runs and the operator queue of breaks (operator
scope only; partner keys get 403).

    GET  /runs                    runs, newest first (`before` = a run's seq to page on)
    POST /runs                    start a run over a window (default: since the last run's
                                  end): the Reconciliation workflow; 202 with the run, running
    GET  /runs/{id}               verdict, counts by class, match rates, residual per currency
                                  (status running, result fields null, while its workflow works)
    GET  /breaks?status=open      the queue, oldest first (`after` = the last id seen)
    POST /breaks/{id}/resolve     close an open break with a reason (audited)
HTTP only: a run is the Reconciliation workflow (started by name, workflows.contracts), every
change commands/reconciliation.py.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Connection, RowMapping
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Operator
from api.deps import EngineDep, SettingsDep, TemporalDep, get_temporal
from api.problems import PROBLEM_RESPONSES, Problem, not_found, refused
from api.schemas.reconciliation import (
    BreakResolve,
    BreakStatusFilter,
    ReconciliationBreak,
    ReconciliationBreakList,
    ReconciliationRun,
    ReconciliationRunCreate,
    ReconciliationRunList,
)
from commands import reconciliation as commands
from reconciliation import runner
from reconciliation.sources import at
from settlepay import task_queues
from settlepay.db import run_in_transaction
from store import reconciliation as store
from workflows.contracts.reconciliation import WORKFLOW, ReconciliationRequest, workflow_id
from workflows.contracts.refusal import Refusal

router = APIRouter(prefix="/v1/reconciliation", tags=["reconciliation"],
                   responses=PROBLEM_RESPONSES)
Limit = Annotated[int, Query(ge=1, le=100)]
SEQ_MAX = 2**63 - 1          # run and break ids are PostgreSQL bigints: larger is a 422
RunCursor = Annotated[int | None, Query(ge=1, le=SEQ_MAX)]
BreakCursor = Annotated[int | None, Query(ge=0, le=SEQ_MAX)]
MEMO_RUN = "reconciliation_run"      # the workflow's memo: the run while it is running
MEMO_FIELDS = ("provider", "window_start", "window_end", "created_by")


@router.get("/runs", response_model=ReconciliationRunList, summary="List reconciliation runs")
def list_runs(principal: Operator, engine: EngineDep, limit: Limit = 20,
              before: RunCursor = None) -> ReconciliationRunList:
    with engine.connect() as conn:
        rows = store.list_runs(conn, limit=limit + 1, before_seq=before)
    return ReconciliationRunList(
        data=[ReconciliationRun.model_validate(commands.run_payload(r)) for r in rows[:limit]],
        has_more=len(rows) > limit)


@router.post("/runs", status_code=202, response_model=ReconciliationRun,
             summary="Start a reconciliation run now")
async def create_run(body: ReconciliationRunCreate, response: Response, principal: Operator,
                     engine: EngineDep, settings: SettingsDep,
                     client: TemporalDep) -> ReconciliationRun:
    """Starts the `Reconciliation` workflow over the window and answers at once with the run
    (`status: running`); `GET /runs/{id}` shows it, complete, once the workflow recorded it."""
    now = int(time.time())
    until = now if body.until is None else int(body.until.timestamp())
    provider = settings.withdrawal_gateway_provider
    if body.since is not None:
        since = int(body.since.timestamp())
    else:
        since = await run_in_threadpool(runner.default_since, engine, provider, until)
    if since >= until:
        raise Problem(422, "reconciliation_window_empty", "Empty window",
                      "`since` must be before `until`.")
    if until > now:
        raise Problem(422, "reconciliation_window_in_future", "Window in the future",
                      "`until` must not be later than now.")
    run_id = workflow_id(uuid.uuid4().hex[:20])
    running = commands.running_payload(run_id, provider=provider, window_start=at(since),
                                       window_end=at(until), created_by=principal.actor)
    await client.start_workflow(
        WORKFLOW, ReconciliationRequest(since=since, until=until, repair=body.repair,
                                        grace_seconds=body.grace_seconds,
                                        actor=principal.actor),
        id=run_id, task_queue=task_queues.MAIN,
        memo={MEMO_RUN: {k: running[k] for k in MEMO_FIELDS}})
    response.headers["Location"] = f"{router.prefix}/runs/{run_id}"
    return ReconciliationRun.model_validate(running)


@router.get("/runs/{run_id}", response_model=ReconciliationRun,
            summary="Retrieve a reconciliation run")
async def retrieve_run(run_id: str, request: Request, principal: Operator,
                       engine: EngineDep) -> ReconciliationRun:
    def read() -> RowMapping | None:
        with engine.connect() as conn:
            return store.get_run(conn, run_id)

    row = await run_in_threadpool(read)
    if row is not None:
        return ReconciliationRun.model_validate(commands.run_payload(row))
    if run_id.startswith(workflow_id("")):       # started through the API: still running?
        running = await _running(await get_temporal(request), run_id)
        if running is not None:
            return ReconciliationRun.model_validate(running)
    raise not_found("reconciliation_run", run_id)


async def _running(client: Client, run_id: str) -> dict[str, Any] | None:
    """The run of a workflow still working on it (from its memo), else None."""
    try:
        described = await client.get_workflow_handle(run_id).describe()
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise
    if described.status != WorkflowExecutionStatus.RUNNING:
        return None
    memo = (await described.memo()).get(MEMO_RUN)
    if not isinstance(memo, dict):
        return None
    return commands.running_payload(
        run_id, provider=memo["provider"], created_by=memo["created_by"],
        window_start=datetime.fromisoformat(memo["window_start"]),
        window_end=datetime.fromisoformat(memo["window_end"]))


@router.get("/breaks", response_model=ReconciliationBreakList,
            summary="List reconciliation breaks (the operator queue)")
def list_breaks(principal: Operator, engine: EngineDep,
                status: BreakStatusFilter | None = "open", run_id: str | None = None,
                class_: Annotated[str | None, Query(alias="class")] = None,
                limit: Limit = 50,
                after: BreakCursor = None) -> ReconciliationBreakList:
    with engine.connect() as conn:
        rows = store.list_breaks(conn, status=status, run_id=run_id, class_=class_,
                                 limit=limit + 1, after_id=after)
    return ReconciliationBreakList(
        data=[_break(r) for r in rows[:limit]], has_more=len(rows) > limit)


@router.post("/breaks/{break_id}/resolve", response_model=ReconciliationBreak,
             summary="Resolve an open break, with a reason")
def resolve_break(break_id: int, body: BreakResolve, principal: Operator,
                  engine: EngineDep) -> ReconciliationBreak:
    def work(conn: Connection) -> RowMapping:
        if store.get_break(conn, break_id) is None:
            raise not_found("reconciliation_break", str(break_id))
        try:
            return commands.resolve_break(conn, break_id, reason=body.reason,
                                          actor=principal.actor)
        except commands.BreakNotOpen as error:
            raise refused(Refusal("reconciliation_break_not_open", str(error)),
                          "The break is not open") from error
    return _break(run_in_transaction(engine, work))


def _break(row: RowMapping) -> ReconciliationBreak:
    return ReconciliationBreak.model_validate(commands.break_payload(row))
