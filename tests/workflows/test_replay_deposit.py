"""Every stored deposit history replays against the current workflow code: a change that would
break a deposit already under way fails here (re-record with record_deposit_histories.py only
when the change is meant for new runs, and patch it with `workflow.patched` otherwise:
workflows/PATCHING.md).

`_before_rooms` histories come from the workflow before it called its activities by name;
`deposit_processing_at_timeout_before_patch` from the workflow before the
"deposit-processing-stays-open" patch (the cancel refused, the deposit failed `expired`): it
replays through the old branch, and fails without the patch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.replay import markers, replay
from workflows.contracts.deposit import Patch
from workflows.deposit import DepositWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("deposit_*.json"))
REQUIRED = {"succeeded_at_once", "three_d_secure_webhook", "declined",
            "processing_at_timeout_succeeded", "processing_limit_review",
            "processing_at_timeout_before_patch"}


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
        assert markers(HISTORIES / f"deposit_{scenario}.json") == {
            Patch.PROCESSING_STAYS_OPEN}, scenario
    assert markers(HISTORIES / "deposit_succeeded_at_once.json") == set()
