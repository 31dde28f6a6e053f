"""Every stored deposit history replays against the current workflow code: a change that would
break a deposit already under way fails here (re-record with record_deposit_histories.py only
when the change is meant for new runs, and patch it with `workflow.patched` otherwise:
workflows/PATCHING.md).

`_before_rooms` histories come from the workflow before it called its activities by name;
`deposit_processing_at_timeout_before_patch` from the workflow before the
"deposit-processing-stays-open" patch (the cancel refused, the deposit failed `expired`): it
replays through the old branch, and fails without the patch. `_before_local_steps` histories
come from the workflow before the "deposit-local-database-steps" patch (gate, credit, fail and
review as activities, not local activities): they replay through the old branch too.
`_before_local_create` histories come from the workflow before the "deposit-local-gateway-create"
patch (the gateway's create + confirm an activity, not a local activity): they replay through
its old branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.replay import load, markers, replay
from workflows.contracts.deposit import Activity, Patch
from workflows.deposit import DepositWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("deposit_*.json"))
SCENARIOS = {"succeeded_at_once", "three_d_secure_webhook", "declined",
             "processing_at_timeout_succeeded", "processing_limit_review"}
REQUIRED = (SCENARIOS | {f"{name}_before_local_steps" for name in SCENARIOS}
            | {f"{name}_before_local_create" for name in SCENARIOS}
            | {"processing_at_timeout_before_patch"})


def test_the_histories_of_each_scenario_are_stored():
    assert REQUIRED <= {path.stem.removeprefix("deposit_") for path in RECORDED}


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_deposit_history_replays(path: Path):
    result = await replay(DepositWorkflow, path, raise_on_replay_failure=False)
    assert result.replay_failure is None


def test_only_histories_that_reached_the_timeout_after_the_patch_carry_its_marker():
    for path in RECORDED:
        if path.stem.endswith(("_before_patch", "_before_rooms")):
            assert markers(path) == set(), path.name
    for scenario in ("processing_at_timeout_succeeded", "processing_limit_review"):
        assert markers(HISTORIES / f"deposit_{scenario}_before_local_steps.json") == {
            Patch.PROCESSING_STAYS_OPEN}, scenario
        assert markers(HISTORIES / f"deposit_{scenario}_before_local_create.json") == {
            Patch.PROCESSING_STAYS_OPEN, Patch.LOCAL_DATABASE_STEPS}, scenario
        assert markers(HISTORIES / f"deposit_{scenario}.json") == {
            Patch.PROCESSING_STAYS_OPEN, Patch.LOCAL_DATABASE_STEPS,
            Patch.LOCAL_GATEWAY_CREATE}, scenario
    assert markers(HISTORIES / "deposit_succeeded_at_once_before_local_steps.json") == set()


def test_histories_recorded_since_the_local_database_steps_carry_that_marker_and_no_other_do():
    for name in SCENARIOS:
        assert Patch.LOCAL_DATABASE_STEPS in markers(HISTORIES / f"deposit_{name}.json"), name
        assert Patch.LOCAL_DATABASE_STEPS not in markers(
            HISTORIES / f"deposit_{name}_before_local_steps.json"), name
    assert markers(HISTORIES / "deposit_succeeded_at_once_before_local_create.json") == {
        Patch.LOCAL_DATABASE_STEPS}


def test_histories_recorded_since_the_local_gateway_create_carry_that_marker_and_no_other_do():
    for name in SCENARIOS:
        assert Patch.LOCAL_GATEWAY_CREATE in markers(HISTORIES / f"deposit_{name}.json"), name
        for before in ("before_local_steps", "before_local_create"):
            assert Patch.LOCAL_GATEWAY_CREATE not in markers(
                HISTORIES / f"deposit_{name}_{before}.json"), name
    assert markers(HISTORIES / "deposit_succeeded_at_once.json") == {
        Patch.LOCAL_DATABASE_STEPS, Patch.LOCAL_GATEWAY_CREATE}


def _scheduled(name: str) -> list[str]:
    return [event.activity_task_scheduled_event_attributes.activity_type.name
            for event in load(HISTORIES / f"deposit_{name}.json").events
            if event.HasField("activity_task_scheduled_event_attributes")]


def _workflow_tasks(name: str) -> int:
    return sum(event.HasField("workflow_task_completed_event_attributes")
               for event in load(HISTORIES / f"deposit_{name}.json").events)


def test_since_the_patches_a_deposit_paid_at_once_is_one_workflow_task_and_no_activity():
    assert _scheduled("succeeded_at_once") == []
    assert _workflow_tasks("succeeded_at_once") == 1
    assert _scheduled("succeeded_at_once_before_local_create") == [Activity.CREATE_PAYMENT]
    assert _workflow_tasks("succeeded_at_once_before_local_create") == 2
    assert _scheduled("succeeded_at_once_before_local_steps") == [
        Activity.CHECK_GATES, Activity.CREATE_PAYMENT, Activity.CREDIT_PLAYER]
