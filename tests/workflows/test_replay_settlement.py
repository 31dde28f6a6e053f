"""Every stored settlement history replays against the current workflow code: a change that
would break a market settlement already under way (a long one continues as new for hours)
fails here. Re-record with record_settlement_histories.py only when a change is meant for new
runs, and patch it with `workflow.patched` otherwise.

The `_before_rooms` histories were recorded from the workflow before the rooms refactor (its
types inside activities/settlement.py, activities called as methods): they still replay, so
runs started before the refactor finish on the new code. `_run<n>` are the runs of one
settlement that continued as new."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.replay import load, replay
from workflows.settlement import MarketSettlementWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("settlement_*.json"))
REQUIRED = {"settled", "resettled", "rolled_back", "refused", "continued_as_new_run1",
            "continued_as_new_run2", "continued_as_new_before_rooms_run1",
            "continued_as_new_before_rooms_run2", "rolled_back_before_rooms"}


def test_the_histories_of_each_scenario_are_stored():
    assert REQUIRED <= {path.stem.removeprefix("settlement_") for path in RECORDED}


def test_a_continued_run_ends_in_continue_as_new_and_the_next_starts_from_it():
    for prefix in ("continued_as_new", "continued_as_new_before_rooms"):
        first = load(HISTORIES / f"settlement_{prefix}_run1.json").events
        second = load(HISTORIES / f"settlement_{prefix}_run2.json").events
        assert first[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        started = second[0].workflow_execution_started_event_attributes
        assert started.continued_execution_run_id


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_settlement_history_replays(path: Path):
    result = await replay(MarketSettlementWorkflow, path)
    assert result.replay_failure is None
