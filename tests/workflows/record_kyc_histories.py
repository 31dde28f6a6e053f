"""Re-record the KYC workflow's stored histories from real runs (not part of `make test`).

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/workflows/record_kyc_histories.py

Each scenario runs the whole stack (API, worker, KYC sandbox, PostgreSQL, the Temporal dev
server), then writes the workflow's history to tests/workflows/histories/kyc_<name>.json,
which tests/workflows/test_replay_kyc.py replays against the current workflow code.
Re-record after a change that is meant to alter new runs only; a change that breaks the replay
of a history that running workflows may have is a bug, or needs `workflow.patched`.

The `kyc_*_before_patch.json` histories are NOT re-recorded here: they were recorded from the
workflow before the patches `kyc-document-reference-per-run` and
`kyc-review-recorded-by-workflow` and stay, frozen, as the proof that a case started before
those changes still replays. Likewise `kyc_*_before_verdict_poll.json` (copies of `verified`,
`expired` and `retry_then_verified` as recorded before `kyc-verdict-polled`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from settlepay import task_queues
from tests.support.factories import Player, make_player
from tests.support.kyc import submit, wait_kyc, webhooks_lost
from tests.support.stack import Stack
from workflows.contracts.kyc import (
    WORKFLOW,
    KycDocument,
    KycRequest,
    KycResult,
    Signal,
    workflow_id,
)

HISTORIES = Path(__file__).parent / "histories"
Scenario = Callable[[Stack, httpx.AsyncClient], Awaitable[Player]]


async def _verified(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine, purpose="history recording")
    assert (await submit(http, player)).status_code == 202
    return player


async def _sanctions_review_approved(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine, first_name="Viktor", last_name="Aleksandrovich Blackwod",
                         purpose="history recording")
    assert (await submit(http, player)).status_code == 202
    await wait_kyc(http, player, ("review",))
    decided = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                              json={"decision": "approve", "note": "not the listed person"})
    assert decided.status_code == 202, decided.text
    return player


async def _sanctions_review_rejected(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine, first_name="Ivo Rastko", last_name="Vremenko",
                         purpose="history recording")
    assert (await submit(http, player)).status_code == 202
    await wait_kyc(http, player, ("review",))
    decided = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                              json={"decision": "reject"})
    assert decided.status_code == 202, decided.text
    return player


async def _retry_then_verified(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine, purpose="history recording")
    assert (await submit(http, player, "RED-RETRY-1")).status_code == 202
    await wait_kyc(http, player, ("resubmission_required",))
    assert (await submit(http, player, "P7654321")).status_code == 202
    return player


async def _expired(stack: Stack, http: httpx.AsyncClient) -> Player:
    """The provider never answers; the deadline is short so that the recording is quick."""
    player = make_player(stack.engine, purpose="history recording")
    await stack.client.start_workflow(
        WORKFLOW, KycRequest(player.id, "system:history", document_timeout_seconds=1.0),
        id=workflow_id(player.id), task_queue=task_queues.MAIN,
        start_signal=Signal.SUBMIT_DOCUMENT,
        start_signal_args=[KycDocument("passport", "SILENT-1", "US")], result_type=KycResult)
    return player


async def _verdict_polled(stack: Stack, http: httpx.AsyncClient) -> Player:
    """The provider decides but its webhook never comes: the workflow polls the check."""
    player = make_player(stack.engine, purpose="history recording")
    with webhooks_lost(stack):
        handle = await stack.client.start_workflow(
            WORKFLOW, KycRequest(player.id, "system:history", document_timeout_seconds=60.0,
                                 verdict_poll_seconds=0.5),
            id=workflow_id(player.id), task_queue=task_queues.MAIN,
            start_signal=Signal.SUBMIT_DOCUMENT,
            start_signal_args=[KycDocument("passport", "P1234567", "US")],
            result_type=KycResult)
        await handle.result()
    return player


SCENARIOS: dict[str, Scenario] = {
    "verified": _verified,
    "sanctions_review_approved": _sanctions_review_approved,
    "sanctions_review_rejected": _sanctions_review_rejected,
    "retry_then_verified": _retry_then_verified,
    "expired": _expired,
    "verdict_polled": _verdict_polled,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_record(name: str, stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = await SCENARIOS[name](stack, http)
    handle = stack.client.get_workflow_handle(workflow_id(player.id))
    await handle.result()
    history = await handle.fetch_history()
    path = HISTORIES / f"kyc_{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
