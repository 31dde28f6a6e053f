"""Every stored deposit history replays against the current workflow code: a change that would
break a deposit already under way fails here (re-record with record_deposit_histories.py only
when the change is meant for new runs, and patch it with `workflow.patched` otherwise:
workflows/PATCHING.md).

`_before_rooms` histories come from the workflow before it called its activities by name;
`deposit_processing_at_timeout_before_patch` from the workflow before the
"deposit-processing-stays-open" patch (the cancel refused, the deposit failed `expired`): it
replays through the old branch, and fails without the patch. `_before_local_steps` histories
come from the workflow before the "deposit-local-database-steps" patch (gate, credit, fail and
review as activities, not local activities): they replay through the old branch too."""

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
        assert markers(HISTORIES / f"deposit_{scenario}.json") == {
            Patch.PROCESSING_STAYS_OPEN, Patch.LOCAL_DATABASE_STEPS}, scenario
    assert markers(HISTORIES / "deposit_succeeded_at_once_before_local_steps.json") == set()


def test_histories_recorded_since_the_local_database_steps_carry_that_marker_and_no_other_do():
    for name in SCENARIOS:
        assert Patch.LOCAL_DATABASE_STEPS in markers(HISTORIES / f"deposit_{name}.json"), name
        assert Patch.LOCAL_DATABASE_STEPS not in markers(
            HISTORIES / f"deposit_{name}_before_local_steps.json"), name
    assert markers(HISTORIES / "deposit_succeeded_at_once.json") == {
        Patch.LOCAL_DATABASE_STEPS}


def test_since_the_patch_a_deposit_runs_only_its_gateway_step_as_an_activity():
    history = load(HISTORIES / "deposit_succeeded_at_once.json")
    scheduled = [event.activity_task_scheduled_event_attributes.activity_type.name
                 for event in history.events
                 if event.HasField("activity_task_scheduled_event_attributes")]
    assert scheduled == [Activity.CREATE_PAYMENT]
    before = load(HISTORIES / "deposit_succeeded_at_once_before_local_steps.json")
    assert [event.activity_task_scheduled_event_attributes.activity_type.name
            for event in before.events
            if event.HasField("activity_task_scheduled_event_attributes")] == [
        Activity.CHECK_GATES, Activity.CREATE_PAYMENT, Activity.CREDIT_PLAYER]
