"""The reconciliation workflow: one reconciliation run, started daily by a Temporal Schedule.

    run the reconciliation (one activity: read the three sides, reconcile, book the day's fees,
    auto-repair the safe breaks, record the run) -> upsert what operators filter on

The run id is the workflow id, so a retried activity records one run. The window ends at the
workflow's start (`workflow.now()`, deterministic) unless the request says otherwise.
Search attributes: `ReconciliationVerdict` (RECONCILED, BREAKS, ...) and, when breaks are left
for an operator, `ReviewPending = "reconciliation_breaks"`.
Must never: do I/O or read configuration.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# Passed through the sandbox, as in workflows/deposit.py: definitions only (no state, no I/O),
# which a new run would otherwise execute again.
with workflow.unsafe.imports_passed_through():
    from settlepay import search_attributes as sa
    from workflows.contracts.reconciliation import (
        REVIEW_PENDING,
        WORKFLOW,
        Activity,
        ReconciliationRequest,
        RunInput,
        RunSummary,
    )


@workflow.defn(name=WORKFLOW)
class ReconciliationWorkflow:
    @workflow.run
    async def run(self, request: ReconciliationRequest) -> RunSummary:
        until = request.until if request.until is not None else int(workflow.now().timestamp())
        summary = await workflow.execute_activity(
            Activity.RUN, RunInput(workflow.info().workflow_id, until, request.since,
                                   request.repair, request.grace_seconds,
                                   request.actor or "workflow"),
            result_type=RunSummary, start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10),
                                     maximum_interval=timedelta(minutes=10),
                                     maximum_attempts=6))
        updates = [sa.RECONCILIATION_VERDICT.value_set(summary.verdict.search_value)]
        if summary.open_breaks:
            updates.append(sa.REVIEW_PENDING.value_set(REVIEW_PENDING))
        workflow.upsert_search_attributes(updates)
        return summary
