"""Every stored withdrawal history replays against the current workflow code: a change that
would break a withdrawal already under way fails here (re-record with
record_withdrawal_histories.py only when the change is meant for new runs, and patch it with
`workflow.patched` otherwise).

The `_before_rooms` histories come from the workflow before the rooms (issue 8) and its two
patches (open debt checked again before the payout, a rejection recorded by the workflow): they
replay through the old branches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from settlepay import codec
from settlepay.config import Settings
from workflows.contracts.withdrawal import Patch
from workflows.withdrawal import WithdrawalWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("withdrawal_*.json"))
REQUIRED = {"paid_refund_then_payout", "cancelled_by_timeout", "approval_approved",
            "approval_rejected", "rejected_for_debt_before_payout", "payout_review_retried",
            "paid_refund_then_payout_before_rooms", "approval_rejected_before_rooms"}


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
    assert REQUIRED <= {path.stem.removeprefix("withdrawal_") for path in RECORDED}


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_withdrawal_history_replays(path: Path):
    result = await Replayer(workflows=[WithdrawalWorkflow],
                            data_converter=codec.data_converter(Settings())
                            ).replay_workflow(_load(path))
    assert result.replay_failure is None


def test_histories_before_the_rooms_carry_no_marker_and_new_ones_do():
    for path in RECORDED:
        if path.stem.endswith("_before_rooms"):
            assert _markers(path) == set(), path.name
    assert Patch.DEBT_CHECKED_BEFORE_PAYOUT in _markers(
        HISTORIES / "withdrawal_paid_refund_then_payout.json")
    assert Patch.REJECTION_RECORDED_BY_WORKFLOW in _markers(
        HISTORIES / "withdrawal_approval_rejected.json")
