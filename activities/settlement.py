"""Settlement activities: thin wrappers that run one store/settlements.py step in one database
transaction and translate its errors for Temporal.

Business refusals (a result that is gone, a closed correction window, an idempotency conflict)
are non-retryable ApplicationErrors whose `type` names the code; everything else (a dropped
connection, a deadlock that outlived its retries) is retried by Temporal, which is safe because
a batch re-run posts nothing twice (see store/settlements.py). Activities are sync (SQLAlchemy)
and run in the worker's thread pool. They never compute payouts themselves.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ledger import IdempotencyConflict
from settlepay.db import run_in_transaction
from store import settlements
from sqlalchemy import Engine

from settlepay.config import Settings


class RunRef(BaseModel):
    market_id: str
    version: int
    mode: str                   # settlements.SETTLE | settlements.ROLLBACK
    workflow_id: str


class PlanRequest(BaseModel):
    market_id: str
    after: str                  # cursor: the last bet id done ("" at the start)
    size: int                   # bets in the round


class BatchRequest(BaseModel):
    run: RunRef
    lo: str                     # bets with lo < id <= hi ...
    hi: str
    part: int = 0               # ... whose player is in this part of the round
    parts: int = 1


class BatchResult(BaseModel):
    processed: int
    posted: int
    pending: int
    skipped: int
    payout_delta: int


class FinishRequest(BaseModel):
    run: RunRef
    processed: int
    posted: int


def _refusal(error: Exception) -> ApplicationError:
    if isinstance(error, settlements.ResultRefused):
        return ApplicationError(error.detail, type=error.code, non_retryable=True)
    return ApplicationError(str(error), type="idempotency_conflict", non_retryable=True)


class SettlementActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn(name="settlement.begin")
    def begin(self, run: RunRef) -> str:
        try:
            return run_in_transaction(self.engine, lambda conn: settlements.begin(
                conn, self.settings, run.market_id, run.version, run.mode, run.workflow_id))
        except settlements.ResultRefused as error:
            raise _refusal(error) from error

    @activity.defn(name="settlement.plan")
    def plan(self, req: PlanRequest) -> str | None:
        with self.engine.connect() as conn:
            return settlements.plan_round(conn, req.market_id, req.after, req.size)

    @activity.defn(name="settlement.batch")
    def settle_batch(self, req: BatchRequest) -> BatchResult:
        run = req.run
        try:
            out = run_in_transaction(self.engine, lambda conn: settlements.settle_range(
                conn, self.settings, run.market_id, run.version, run.mode, req.lo, req.hi,
                part=req.part, parts=req.parts, actor=f"workflow:{run.workflow_id}"))
        except (settlements.ResultRefused, IdempotencyConflict) as error:
            raise _refusal(error) from error
        return BatchResult(processed=out.processed, posted=out.posted, pending=out.pending,
                           skipped=out.skipped, payout_delta=out.payout_delta)

    @activity.defn(name="settlement.finish")
    def finish(self, req: FinishRequest) -> dict:
        run = req.run
        result = run_in_transaction(self.engine, lambda conn: settlements.finish(
            conn, run.market_id, run.version, run.mode, run.workflow_id, req.processed, req.posted))
        return {"state": result["state"], "bets": result["bets"], "totals": result["totals"]}

    def all(self) -> list:
        return [self.begin, self.plan, self.settle_batch, self.finish]
