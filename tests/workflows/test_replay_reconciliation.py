"""Every stored reconciliation history replays against the current workflow code: a change
that would break a run already under way fails here. Re-record with
record_reconciliation_histories.py only when a change is meant for new runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.replay import replay
from workflows.reconciliation import ReconciliationWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("reconciliation_*.json"))
REQUIRED = {"reconciled", "breaks", "default_window"}


def test_the_histories_of_each_scenario_are_stored():
    assert REQUIRED <= {path.stem.removeprefix("reconciliation_") for path in RECORDED}


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_reconciliation_history_replays(path: Path):
    result = await replay(ReconciliationWorkflow, path)
    assert result.replay_failure is None
