"""Settlement activities: each runs one commands/settlement.py step (or one store read) in one
database transaction and translates its refusals for Temporal.

Business refusals (a result that is gone, a closed correction window, an idempotency conflict)
are non-retryable ApplicationErrors whose `type` names the code (`Refusal.as_error`);
everything else (a dropped connection, a deadlock that outlived its retries) is retried by
Temporal, which is safe because a batch re-run posts nothing twice. Activities are sync
(SQLAlchemy) and run in the worker's thread pool. Must never compute a payout or decide what
happens after a failure (the workflow does).

Metrics, once a step has committed: settlepay_settlement_part_seconds (one batch part, its
transaction), settlepay_settlement_bets_total{step} (the part's bets by the history row each
got: settlement, resettlement, rollback, ...; "unchanged" for bets that needed nothing),
settlepay_settlement_seconds (a settle run: from its result's arrival to the finish). Each
activity logs one `activity.logger` line (counts and states, with the workflow id). A batch
part's span (RunActivity:settlement.batch, in the run's trace through the tracing interceptor)
names its part and bets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from sqlalchemy import Engine
from temporalio import activity

from commands import settlement as commands
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from settlepay.observability import metrics
from store import settlements as store
from workflows.contracts.refusal import Refusal
from workflows.contracts.settlement import (
    Activity,
    BatchRequest,
    BatchResult,
    FinishRequest,
    FinishResult,
    MarketState,
    Mode,
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
            state = run_in_transaction(self.engine, lambda conn: commands.begin(
                conn, self.settings, run.market_id, run.version, run.mode, run.workflow_id))
        except commands.ResultRefused as error:
            _log("settlement refused", refusal_code=str(error.code))
            raise error.refusal.as_error() from error
        _log("settlement begun", settlement_state=str(state), mode=str(run.mode))
        return state

    @activity.defn(name=Activity.PLAN)
    def plan(self, req: PlanRequest) -> str | None:
        with self.engine.connect() as conn:
            end = store.round_end(conn, req.market_id, req.after, req.size)
        _log("settlement round planned", round_size=req.size, last_round=end is None)
        return end

    @activity.defn(name=Activity.BATCH)
    def settle_batch(self, req: BatchRequest) -> BatchResult:
        run = req.run
        try:
            with metrics.timed(metrics.SETTLEMENT_PART_SECONDS):
                out = run_in_transaction(self.engine, lambda conn: commands.settle_range(
                    conn, self.settings, run.market_id, run.version, run.mode, req.lo, req.hi,
                    part=req.part, parts=req.parts, actor=f"workflow:{run.workflow_id}"))
        except commands.ResultRefused as error:
            raise error.refusal.as_error() from error
        except commands.IdempotencyConflict as error:
            refusal = Refusal(SettlementRefusal.IDEMPOTENCY_CONFLICT, str(error))
            raise refusal.as_error() from error
        trace.get_current_span().set_attributes({
            "settlement.part": req.part, "settlement.parts": req.parts,
            "settlement.bets": out.processed, "settlement.postings": out.posted})
        steps = Counter(out.steps)
        steps["unchanged"] = out.processed - out.changed
        for step, bets in steps.items():
            if bets > 0:
                metrics.count(metrics.SETTLEMENT_BETS, step, bets)
        _log("settlement batch", part=req.part, parts=req.parts, bets_processed=out.processed,
             bets_posted=out.posted, bets_pending=out.pending, bets_skipped=out.skipped,
             bets_needing_review=out.needs_review)
        return BatchResult(processed=out.processed, posted=out.posted, pending=out.pending,
                           skipped=out.skipped, payout_delta=out.payout_delta,
                           needs_review=out.needs_review)

    @activity.defn(name=Activity.FINISH)
    def finish(self, req: FinishRequest) -> FinishResult:
        run = req.run
        result = run_in_transaction(self.engine, lambda conn: commands.finish(
            conn, run.market_id, run.version, run.mode, run.workflow_id, req.processed,
            req.posted))
        received = next((v["received_at"] for v in result.get("result_versions", ())
                         if v["version"] == run.version), None)
        if run.mode == Mode.SETTLE and received is not None:
            metrics.observe(metrics.SETTLEMENT_SECONDS,
                            (datetime.now(UTC) - received).total_seconds())
        _log("settlement finished", settlement_state=str(result["state"]),
             bets_processed=req.processed, bets_posted=req.posted)
        return FinishResult(state=result["state"], bets=result["bets"], totals=result["totals"])

    def all(self) -> list[Callable[..., Any]]:
        return [self.begin, self.plan, self.settle_batch, self.finish]


def _log(event: str, **fields: Any) -> None:
    """One line of the running activity (its workflow and activity ids come with the record)."""
    activity.logger.info(event, extra=fields)
