"""Every stored withdrawal history replays against the current workflow code: a change that
would break a withdrawal already under way fails here (re-record with
record_withdrawal_histories.py only when the change is meant for new runs, and patch it with
`workflow.patched` otherwise).

The `_before_rooms` histories come from the workflow before the rooms (issue 8) and its two
patches (open debt checked again before the payout, a rejection recorded by the workflow): they
replay through the old branches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.replay import markers, replay
from workflows.contracts.withdrawal import Patch
from workflows.withdrawal import WithdrawalWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("withdrawal_*.json"))
REQUIRED = {"paid_refund_then_payout", "cancelled_by_timeout", "approval_approved",
            "approval_rejected", "rejected_for_debt_before_payout", "payout_review_retried",
            "paid_refund_then_payout_before_rooms", "approval_rejected_before_rooms"}


def test_the_histories_of_each_scenario_are_stored():
    assert REQUIRED <= {path.stem.removeprefix("withdrawal_") for path in RECORDED}


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_withdrawal_history_replays(path: Path):
    result = await replay(WithdrawalWorkflow, path)
    assert result.replay_failure is None


def test_histories_before_the_rooms_carry_no_marker_and_new_ones_do():
    for path in RECORDED:
        if path.stem.endswith("_before_rooms"):
            assert markers(path) == set(), path.name
    assert Patch.DEBT_CHECKED_BEFORE_PAYOUT in markers(
        HISTORIES / "withdrawal_paid_refund_then_payout.json")
    assert Patch.REJECTION_RECORDED_BY_WORKFLOW in markers(
        HISTORIES / "withdrawal_approval_rejected.json")
