"""Every stored deposit history replays against the current workflow code: a change that would
break a deposit already under way fails here (re-record with record_deposit_histories.py only
when the change is meant for new runs, and patch it with `workflow.patched` otherwise:
workflows/PATCHING.md).

`_before_rooms` histories come from the workflow before it called its activities by name;
`deposit_processing_at_timeout_before_patch` from the workflow before the
"deposit-processing-stays-open" patch (the cancel refused, the deposit failed `expired`): it
replays through the old branch, and fails without the patch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from settlepay import codec
from settlepay.config import Settings
from workflows.contracts.deposit import Patch
from workflows.deposit import DepositWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("deposit_*.json"))
REQUIRED = {"succeeded_at_once", "three_d_secure_webhook", "declined",
            "processing_at_timeout_succeeded", "processing_limit_review",
            "processing_at_timeout_before_patch"}


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _markers(path: Path) -> set[str]:
    """The patch ids the history recorded (`workflow.patched` markers)."""
    found = set()
    for event in _load(path).events:
        marker = event.marker_recorded_event_attributes
        if event.HasField("marker_recorded_event_attributes") and "patch-data" in marker.details:
            found.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


def test_the_histories_of_each_scenario_are_stored():
    assert REQUIRED <= {path.stem.removeprefix("deposit_") for path in RECORDED}


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_deposit_history_replays(path: Path):
    result = await Replayer(workflows=[DepositWorkflow],
                            data_converter=codec.data_converter(Settings())).replay_workflow(
        _load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None


def test_only_histories_that_reached_the_timeout_after_the_patch_carry_its_marker():
    for path in RECORDED:
        if path.stem.endswith(("_before_patch", "_before_rooms")):
            assert _markers(path) == set(), path.name
    for scenario in ("processing_at_timeout_succeeded", "processing_limit_review"):
        assert _markers(HISTORIES / f"deposit_{scenario}.json") == {
            Patch.PROCESSING_STAYS_OPEN}, scenario
    assert _markers(HISTORIES / "deposit_succeeded_at_once.json") == set()
