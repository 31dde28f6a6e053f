"""Settlement activities: each runs one commands/settlement.py step (or one store read) in one
database transaction and translates its refusals for Temporal.

Business refusals (a result that is gone, a closed correction window, an idempotency conflict)
are non-retryable ApplicationErrors whose `type` names the code (`Refusal.as_error`);
everything else (a dropped connection, a deadlock that outlived its retries) is retried by
Temporal, which is safe because a batch re-run posts nothing twice. Activities are sync
(SQLAlchemy) and run in the worker's thread pool. Must never compute a payout or decide what
happens after a failure (the workflow does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from temporalio import activity

from commands import settlement as commands
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import settlements as store
from workflows.contracts.refusal import Refusal
from workflows.contracts.settlement import (
    Activity,
    BatchRequest,
    BatchResult,
    FinishRequest,
    FinishResult,
    MarketState,
    PlanRequest,
    RunRef,
    SettlementRefusal,
)


class SettlementActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn(name=Activity.BEGIN)
    def begin(self, run: RunRef) -> MarketState:
        try:
            return run_in_transaction(self.engine, lambda conn: commands.begin(
                conn, self.settings, run.market_id, run.version, run.mode, run.workflow_id))
        except commands.ResultRefused as error:
            raise error.refusal.as_error() from error

    @activity.defn(name=Activity.PLAN)
    def plan(self, req: PlanRequest) -> str | None:
        with self.engine.connect() as conn:
            return store.round_end(conn, req.market_id, req.after, req.size)

    @activity.defn(name=Activity.BATCH)
    def settle_batch(self, req: BatchRequest) -> BatchResult:
        run = req.run
        try:
            out = run_in_transaction(self.engine, lambda conn: commands.settle_range(
                conn, self.settings, run.market_id, run.version, run.mode, req.lo, req.hi,
                part=req.part, parts=req.parts, actor=f"workflow:{run.workflow_id}"))
        except commands.ResultRefused as error:
            raise error.refusal.as_error() from error
        except commands.IdempotencyConflict as error:
            refusal = Refusal(SettlementRefusal.IDEMPOTENCY_CONFLICT, str(error))
            raise refusal.as_error() from error
        return BatchResult(processed=out.processed, posted=out.posted, pending=out.pending,
                           skipped=out.skipped, payout_delta=out.payout_delta,
                           needs_review=out.needs_review)

    @activity.defn(name=Activity.FINISH)
    def finish(self, req: FinishRequest) -> FinishResult:
        run = req.run
        result = run_in_transaction(self.engine, lambda conn: commands.finish(
            conn, run.market_id, run.version, run.mode, run.workflow_id, req.processed,
            req.posted))
        return FinishResult(state=result["state"], bets=result["bets"], totals=result["totals"])

    def all(self) -> list[Callable[..., Any]]:
        return [self.begin, self.plan, self.settle_batch, self.finish]
