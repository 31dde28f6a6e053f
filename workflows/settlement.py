"""The market settlement workflow: a result version arrives, every bet on the market is paid
(or corrected, or rolled back) exactly once, batch by batch.

Workflow id `settle-<market>-v<version>` (rollback: `rollback-<market>-v<version>`), task queue
`task_queues.SETTLEMENT`. The runbook:

    begin            mark the market settling / resettling / rolling back
    loop             find where the next round of batch_size x concurrency bets ends (bet id
                     order after the cursor), settle its parts concurrently (split by player;
                     each part one activity, one DB transaction), advance the cursor, show progress (query `progress`, search attribute SettlementProgress)
                     and continue-as-new before the history grows large
    finish           mark the market settled / rolled back, announce it

No I/O here and no payout maths: the activities and domain.settlement do that. A batch that is
retried (worker killed, timeout) re-reads the bets and posts only what is still missing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.settlement import (
        BatchRequest, BatchResult, FinishRequest, PlanRequest, RunRef, SettlementActivities,
    )
    from settlepay import search_attributes

# Refusals that no retry can fix; everything else is transient.
NON_RETRYABLE = ["result_not_found", "result_rolled_back", "correction_window_closed",
                 "idempotency_conflict"]
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30), non_retryable_error_types=NON_RETRYABLE)
STEP_TIMEOUT = timedelta(seconds=30)


def workflow_id(market_id: str, version: int, mode: str = "settle") -> str:
    return f"{'rollback' if mode == 'rollback' else 'settle'}-{market_id}-v{version}"


class SettlementRun(BaseModel):
    market_id: str
    version: int
    mode: str = "settle"            # "settle" (also resettles) | "rollback"
    batch_size: int = 2000
    concurrency: int = 4            # batches in flight at once (the parts of a round)
    rounds_per_run: int = 40        # continue-as-new after this many rounds (bounded history)
    batch_timeout_seconds: int = 120  # a worker dying mid-batch is noticed after this long
    # Carried across continue-as-new:
    cursor: str = ""
    started: bool = False
    processed: int = 0
    posted: int = 0
    pending: int = 0
    skipped: int = 0
    payout_delta: int = 0
    runs: int = 1


class SettlementProgress(BaseModel):
    market_id: str
    version: int
    mode: str
    state: str
    cursor: str
    processed: int
    posted: int
    pending: int
    skipped: int
    payout_delta: int
    runs: int


@workflow.defn(name="MarketSettlement")
class MarketSettlementWorkflow:
    def __init__(self) -> None:
        self.run_state: SettlementRun | None = None
        self.state = "starting"

    @workflow.run
    async def run(self, run: SettlementRun) -> SettlementProgress:
        self.run_state = run
        if not run.started:
            await self.begin(run)
        else:   # continued as new: begin ran in an earlier run
            self.state = "rolling_back" if run.mode == "rollback" else "settling"
        for _ in range(run.rounds_per_run):
            hi = await self.plan_next_round(run)
            if hi is None:
                return await self.finish(run)
            await self.settle_round(run, hi)
            if workflow.info().is_continue_as_new_suggested():
                break
        # The history is bounded: the next run starts from the cursor with a fresh one.
        self.state = "continuing"
        workflow.continue_as_new(run.model_copy(update={"runs": run.runs + 1}))

    @workflow.query
    def progress(self) -> SettlementProgress:
        run = self.run_state
        assert run is not None
        return SettlementProgress(market_id=run.market_id, version=run.version, mode=run.mode,
                                  state=self.state, cursor=run.cursor, processed=run.processed,
                                  posted=run.posted, pending=run.pending, skipped=run.skipped,
                                  payout_delta=run.payout_delta, runs=run.runs)

    def ref(self, run: SettlementRun) -> RunRef:
        return RunRef(market_id=run.market_id, version=run.version, mode=run.mode,
                      workflow_id=workflow.info().workflow_id)

    async def begin(self, run: SettlementRun) -> None:
        workflow.upsert_search_attributes([search_attributes.MARKET_ID.value_set(run.market_id),
                                           search_attributes.SETTLEMENT_PROGRESS.value_set(0)])
        self.state = await workflow.execute_activity_method(
            SettlementActivities.begin, self.ref(run), start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)
        run.started = True

    async def plan_next_round(self, run: SettlementRun) -> str | None:
        return await workflow.execute_activity_method(
            SettlementActivities.plan,
            PlanRequest(market_id=run.market_id, after=run.cursor, size=run.batch_size * run.concurrency),
            start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)

    async def settle_round(self, run: SettlementRun, hi: str) -> None:
        # One batch per part of the round, all at once: the parts split the round's bets by
        # player, so they never wait on each other's ledger locks.
        ref = self.ref(run)
        results: list[BatchResult] = await asyncio.gather(*(
            workflow.execute_activity_method(
                SettlementActivities.settle_batch,
                BatchRequest(run=ref, lo=run.cursor, hi=hi, part=part, parts=run.concurrency),
                start_to_close_timeout=timedelta(seconds=run.batch_timeout_seconds), retry_policy=RETRY)
            for part in range(run.concurrency)))
        for r in results:
            run.processed += r.processed
            run.posted += r.posted
            run.pending += r.pending
            run.skipped += r.skipped
            run.payout_delta += r.payout_delta
        run.cursor = hi
        workflow.upsert_search_attributes([search_attributes.SETTLEMENT_PROGRESS.value_set(run.processed)])

    async def finish(self, run: SettlementRun) -> SettlementProgress:
        await workflow.execute_activity_method(
            SettlementActivities.finish,
            FinishRequest(run=self.ref(run), processed=run.processed, posted=run.posted),
            start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)
        self.state = "rolled_back" if run.mode == "rollback" else "settled"
        return self.progress()
