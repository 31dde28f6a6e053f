"""Every stored KYC history replays against the current workflow code: a change that would
break a case already under way fails here (re-record with record_kyc_histories.py only when
the change is meant for new runs, and patch it with `workflow.patched` otherwise).

The `_before_patch` histories come from the workflow before its two patches (per-run document
references, the review recorded by the workflow), the `_before_verdict_poll` ones from before
the verdict was polled (the wait for the webhook alone, Patch.VERDICT_POLLED): they replay
through the old branches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.replay import markers, replay
from workflows.contracts.kyc import Patch
from workflows.kyc import KycWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("kyc_*.json"))
REQUIRED = {"verified", "sanctions_review_approved", "expired", "retry_then_verified_before_patch",
            "sanctions_review_approved_before_patch", "verdict_polled",
            "verified_before_verdict_poll", "expired_before_verdict_poll",
            "retry_then_verified_before_verdict_poll"}


def test_the_histories_of_each_scenario_are_stored():
    assert REQUIRED <= {path.stem.removeprefix("kyc_") for path in RECORDED}


@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_a_stored_kyc_history_replays(path: Path):
    result = await replay(KycWorkflow, path)
    assert result.replay_failure is None


def test_histories_before_the_patches_carry_no_marker_and_new_ones_do():
    for path in RECORDED:
        if path.stem.endswith("_before_patch"):
            assert markers(path) == set(), path.name
    assert Patch.REFERENCE_PER_RUN in markers(HISTORIES / "kyc_verified.json")
    assert Patch.REVIEW_RECORDED_BY_WORKFLOW in markers(
        HISTORIES / "kyc_sanctions_review_approved.json")
    for path in HISTORIES.glob("kyc_*_before_verdict_poll.json"):
        assert Patch.VERDICT_POLLED not in markers(path), path.name
    for name in ("verdict_polled", "verified", "expired", "retry_then_verified"):
        assert Patch.VERDICT_POLLED in markers(HISTORIES / f"kyc_{name}.json"), name
