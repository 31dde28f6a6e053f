"""The market settlement workflow: a result version arrives, every bet on the market is paid
(or corrected, or rolled back) exactly once, batch by batch.

Workflow id `settle-<market>-v<version>` (rollback: `rollback-<market>-v<version>`), task queue
`task_queues.SETTLEMENT`; names and types in workflows/contracts/settlement.py. The runbook:

    begin     mark the market settling / resettling / rolling back; a refusal (the result
              is gone or was rolled back) ends the run `refused`, nothing changed
    loop      find where the next round of batch_size x concurrency bets ends (bet id order
              after the cursor); settle its parts concurrently (split by player; each part
              one activity, one DB transaction); advance the cursor; show progress (query
              `progress`, search attribute SettlementProgress); continue-as-new after
              `rounds_per_run` rounds or when Temporal suggests it (bounded history)
    finish    mark the market settled / rolled back, announce it

Logs: one `workflow.logger` line "settlement step" at each boundary (begin, refused, round,
continue_as_new, finish) with the counts so far; the workflow id comes with the record, and
Temporal drops the lines while replaying (a log line is no command of the history).

Must never: do I/O or payout maths (the activities, commands/settlement.py and
domain/settlement do). A batch that is retried (worker killed, timeout) re-reads the bets and
posts only what is still missing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from settlepay import search_attributes
    from workflows.contracts.refusal import Refusal
    from workflows.contracts.settlement import (
        NON_RETRYABLE,
        WORKFLOW,
        Activity,
        BatchRequest,
        BatchResult,
        FinishRequest,
        FinishResult,
        MarketState,
        Mode,
        PlanRequest,
        RunRef,
        RunState,
        SettlementProgress,
        SettlementRun,
    )

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30),
                    non_retryable_error_types=list(NON_RETRYABLE))
STEP_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=WORKFLOW)
class MarketSettlementWorkflow:
    def __init__(self) -> None:
        self.run_state: SettlementRun | None = None
        self.state = RunState.STARTING
        self.refusal: Refusal | None = None

    # --- the runbook -----------------------------------------------------------------------
    @workflow.run
    async def run(self, run: SettlementRun) -> SettlementProgress:
        self.run_state = run
        if not run.started:
            self.refusal = await self.begin(run)
            if self.refusal is not None:
                self.state = RunState.REFUSED
                self._log("refused", refusal_code=self.refusal.code)
                return self.progress()
        else:   # continued as new: begin ran in an earlier run
            self.state = RunState.ROLLING_BACK if run.mode == Mode.ROLLBACK else RunState.SETTLING
        for _ in range(run.rounds_per_run):
            hi = await self.plan_next_round(run)
            if hi is None:
                return await self.finish(run)
            await self.settle_round(run, hi)
            if workflow.info().is_continue_as_new_suggested():
                break
        # The history is bounded: the next run starts from the cursor with a fresh one.
        self.state = RunState.CONTINUING
        self._log("continue_as_new", runs=run.runs)
        workflow.continue_as_new(run.model_copy(update={"runs": run.runs + 1}))

    @workflow.query
    def progress(self) -> SettlementProgress:
        run = self.run_state
        assert run is not None
        return SettlementProgress(
            market_id=run.market_id, version=run.version, mode=run.mode, state=self.state,
            cursor=run.cursor, processed=run.processed, posted=run.posted, pending=run.pending,
            skipped=run.skipped, payout_delta=run.payout_delta, runs=run.runs,
            needs_review=run.needs_review,
            refusal_code=self.refusal.code if self.refusal else None,
            refusal_reason=self.refusal.reason if self.refusal else None)

    # --- the steps -------------------------------------------------------------------------
    def ref(self, run: SettlementRun) -> RunRef:
        return RunRef(market_id=run.market_id, version=run.version, mode=run.mode,
                      workflow_id=workflow.info().workflow_id)

    async def begin(self, run: SettlementRun) -> Refusal | None:
        """Mark the market's run started (None), or the refusal that ends this run."""
        workflow.upsert_search_attributes([
            search_attributes.MARKET_ID.value_set(run.market_id),
            search_attributes.SETTLEMENT_PROGRESS.value_set(0)])
        try:
            state = await workflow.execute_activity(
                Activity.BEGIN, self.ref(run), result_type=MarketState,
                start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)
        except ActivityError as error:
            refusal = Refusal.of(error)
            if refusal is None:
                raise
            return refusal
        self.state = RunState(str(state))
        run.started = True
        self._log("begin")
        return None

    async def plan_next_round(self, run: SettlementRun) -> str | None:
        """The last bet id of the next round (None: every bet is done)."""
        return await workflow.execute_activity(
            Activity.PLAN,
            PlanRequest(market_id=run.market_id, after=run.cursor,
                        size=run.batch_size * run.concurrency),
            result_type=str | None, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)

    async def settle_round(self, run: SettlementRun, hi: str) -> None:
        """One batch per part of the round, all at once: the parts split the round's bets by
        player, so they never wait on each other's ledger locks."""
        ref = self.ref(run)
        results: list[BatchResult] = await asyncio.gather(*(
            workflow.execute_activity(
                Activity.BATCH,
                BatchRequest(run=ref, lo=run.cursor, hi=hi, part=part, parts=run.concurrency),
                result_type=BatchResult,
                start_to_close_timeout=timedelta(seconds=run.batch_timeout_seconds),
                retry_policy=RETRY)
            for part in range(run.concurrency)))
        for r in results:
            run.processed += r.processed
            run.posted += r.posted
            run.pending += r.pending
            run.skipped += r.skipped
            run.needs_review += r.needs_review
            run.payout_delta += r.payout_delta
        run.cursor = hi
        workflow.upsert_search_attributes([
            search_attributes.SETTLEMENT_PROGRESS.value_set(run.processed)])
        self._log("round", bets_processed=run.processed, bets_posted=run.posted)

    async def finish(self, run: SettlementRun) -> SettlementProgress:
        """Mark the market settled / rolled back and announce it."""
        await workflow.execute_activity(
            Activity.FINISH,
            FinishRequest(run=self.ref(run), processed=run.processed, posted=run.posted),
            result_type=FinishResult, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)
        self.state = RunState.ROLLED_BACK if run.mode == Mode.ROLLBACK else RunState.SETTLED
        self._log("finish", bets_processed=run.processed, bets_posted=run.posted,
                  bets_needing_review=run.needs_review)
        return self.progress()

    def _log(self, step: str, **fields: object) -> None:
        """One line at a step boundary (replay-safe: workflow.logger)."""
        workflow.logger.info("settlement step", extra={
            "settlement_step": step, "settlement_state": str(self.state), **fields})
