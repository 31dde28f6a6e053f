"""The daily run: the Temporal Schedule is created idempotently, and the Reconciliation
workflow on the real worker records a run findable in Temporal by its search attributes."""

from __future__ import annotations

import uuid

from temporalio.client import ScheduleActionStartWorkflow

from reconciliation.schedule import ensure_schedule
from tests.support import reconciliation as rec
from tests.support.factories import make_player, wait_until
from tests.support.stack import Stack
from workflows.contracts.reconciliation import (
    SCHEDULE_ID,
    WORKFLOW,
    ReconciliationRequest,
    RunSummary,
    Verdict,
    workflow_id,
)


async def test_the_daily_schedule_is_created_once_and_kept_in_line_with_the_settings(
        stack: Stack):
    first = await ensure_schedule(stack.client, stack.settings)
    again = await ensure_schedule(stack.client, stack.settings)
    assert first in ("created", "updated", "unchanged") and again != "created"
    described = await stack.client.get_schedule_handle(SCHEDULE_ID).describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == WORKFLOW
    assert not described.schedule.state.paused
    paused = stack.settings.model_copy(update={"reconciliation_schedule_enabled": False})
    assert await ensure_schedule(stack.client, paused) == "updated"
    assert (await stack.client.get_schedule_handle(SCHEDULE_ID).describe()).schedule.state.paused
    await ensure_schedule(stack.client, stack.settings)


async def test_the_workflow_records_a_run_findable_by_its_verdict(stack: Stack, worker):
    start = await rec.next_second()
    player = make_player(stack.engine)
    rec.paid_withdrawal(stack, player, 800, gateway_ref="po_gone_for_good")
    until = await rec.next_second()
    wid = workflow_id(uuid.uuid4().hex[:10])
    summary = await stack.client.execute_workflow(
        WORKFLOW, ReconciliationRequest(since=start, until=until, grace_seconds=0), id=wid,
        task_queue=worker.task_queue, result_type=RunSummary)
    assert (summary.run_id, summary.verdict, summary.open_breaks) == (wid, Verdict.BREAKS, 1)
    found = await wait_until(lambda: _listed(stack, f'WorkflowId = "{wid}" AND '
                                                    'ReconciliationVerdict = "BREAKS" AND '
                                                    'ReviewPending = "reconciliation_breaks"'))
    assert found == [wid]


async def _listed(stack: Stack, query: str) -> list[str]:
    return [w.id async for w in stack.client.list_workflows(query)]
