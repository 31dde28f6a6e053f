"""The daily reconciliation: a Temporal Schedule the worker creates when it starts.

`ensure_schedule(client, settings)` is idempotent: it creates the schedule `reconciliation-daily`
(cron `reconciliation_schedule_cron`, UTC) starting the `Reconciliation` workflow, or updates
an existing one to the configured cron; with `reconciliation_schedule_enabled` false it leaves
nothing scheduled (an existing schedule is paused). Overlapping runs are skipped.
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from settlepay import task_queues
from settlepay.config import Settings
from workflows.contracts.reconciliation import (
    SCHEDULE_ID,
    WORKFLOW,
    ReconciliationRequest,
    workflow_id,
)


def schedule_of(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(WORKFLOW, ReconciliationRequest(),
                                           id=workflow_id("scheduled"),
                                           task_queue=task_queues.MAIN),
        spec=ScheduleSpec(cron_expressions=[settings.reconciliation_schedule_cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=not settings.reconciliation_schedule_enabled,
                            note="daily payment reconciliation (issue 11)"))


async def ensure_schedule(client: Client, settings: Settings) -> str:
    """'created', 'updated' or 'unchanged'."""
    wanted = schedule_of(settings)
    try:
        await client.create_schedule(SCHEDULE_ID, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(SCHEDULE_ID)
    current = await handle.describe()
    spec = current.schedule.spec
    if (list(spec.cron_expressions) == [settings.reconciliation_schedule_cron]
            and current.schedule.state.paused == (not settings.reconciliation_schedule_enabled)):
        return "unchanged"

    def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=wanted)

    await handle.update(update)
    return "updated"
