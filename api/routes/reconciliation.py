"""/v1/reconciliation: payment reconciliation runs and the operator queue of breaks (operator
scope only; partner keys get 403).

    GET  /runs                    runs, newest first (`before` = a run's seq to page on)
    POST /runs                    run now over a window (default: since the last run's end)
    GET  /runs/{id}               verdict, counts by class, match rates, residual per currency
    GET  /breaks?status=open      the queue, oldest first (`after` = the last id seen)
    POST /breaks/{id}/resolve     close an open break with a reason (audited)
HTTP only: the run is reconciliation.runner, every change commands/reconciliation.py.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import Connection, RowMapping
from starlette.concurrency import run_in_threadpool

from adapters.gateway import PaymentGateway
from api.auth import Operator
from api.deps import EngineDep, SettingsDep, TemporalDep
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
from reconciliation.model import Window
from settlepay.db import run_in_transaction
from store import reconciliation as store
from workflows.contracts.refusal import Refusal

router = APIRouter(prefix="/v1/reconciliation", tags=["reconciliation"],
                   responses=PROBLEM_RESPONSES)
Limit = Annotated[int, Query(ge=1, le=100)]


def _gateway(request: Request) -> PaymentGateway:
    state = request.app.state
    gateway = getattr(state, "reconciliation_gateway", None)
    if gateway is None:
        from adapters.gateway import from_settings
        gateway = state.reconciliation_gateway = from_settings(state.settings)
    return gateway


@router.get("/runs", response_model=ReconciliationRunList, summary="List reconciliation runs")
def list_runs(principal: Operator, engine: EngineDep, limit: Limit = 20,
              before: Annotated[int | None, Query(ge=1)] = None) -> ReconciliationRunList:
    with engine.connect() as conn:
        rows = store.list_runs(conn, limit=limit + 1, before_seq=before)
    return ReconciliationRunList(
        data=[ReconciliationRun.model_validate(commands.run_payload(r)) for r in rows[:limit]],
        has_more=len(rows) > limit)


@router.post("/runs", status_code=201, response_model=ReconciliationRun,
             summary="Run a reconciliation now")
async def create_run(body: ReconciliationRunCreate, request: Request, principal: Operator,
                     engine: EngineDep, settings: SettingsDep,
                     client: TemporalDep) -> ReconciliationRun:
    now = int(time.time())
    until = now if body.until is None else int(body.until.timestamp())
    if body.since is not None:
        since = int(body.since.timestamp())
    else:
        since = await run_in_threadpool(runner.default_since, engine, "stripe", until)
    if since >= until:
        raise Problem(422, "reconciliation_window_empty", "Empty window",
                      "`since` must be before `until`.")
    if until > now:
        raise Problem(422, "reconciliation_window_in_future", "Window in the future",
                      "`until` must not be later than now.")
    options = runner.options_from(settings, Window(since, until), repair=body.repair,
                                  run_id=f"recon_{uuid.uuid4().hex[:20]}",
                                  actor=principal.actor)
    if body.grace_seconds is not None:
        options.grace_seconds = body.grace_seconds
    result = await runner.run(engine, settings, _gateway(request), options, client=client)
    return ReconciliationRun.model_validate(commands.run_payload(result.run))


@router.get("/runs/{run_id}", response_model=ReconciliationRun,
            summary="Retrieve a reconciliation run")
def retrieve_run(run_id: str, principal: Operator, engine: EngineDep) -> ReconciliationRun:
    with engine.connect() as conn:
        row = store.get_run(conn, run_id)
    if row is None:
        raise not_found("reconciliation_run", run_id)
    return ReconciliationRun.model_validate(commands.run_payload(row))


@router.get("/breaks", response_model=ReconciliationBreakList,
            summary="List reconciliation breaks (the operator queue)")
def list_breaks(principal: Operator, engine: EngineDep,
                status: BreakStatusFilter | None = "open", run_id: str | None = None,
                class_: Annotated[str | None, Query(alias="class")] = None,
                limit: Limit = 50,
                after: Annotated[int | None, Query(ge=0)] = None) -> ReconciliationBreakList:
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
