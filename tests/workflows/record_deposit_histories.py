"""Re-record the deposit workflow's stored histories from real runs (not part of `make test`).

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/workflows/record_deposit_histories.py

Each scenario runs the whole stack (API, worker, Stripe sandbox, PostgreSQL, the Temporal dev
server), then writes the workflow's history to tests/workflows/histories/deposit_<name>.json,
which tests/workflows/test_replay_deposit.py replays against the current workflow code.
Re-record after a change that is meant to alter new runs only; a change that breaks the replay
of a history that running workflows may have is a bug, or needs `workflow.patched`
(workflows/PATCHING.md).

`deposit_processing_at_timeout_before_patch.json` is NOT re-recorded here: it was recorded from the
workflow before the "deposit-processing-stays-open" patch and stays, frozen, as the proof that
a workflow started before that change still replays. Likewise `deposit_*_before_local_steps.json`
(each scenario before the "deposit-local-database-steps" patch) and `deposit_*_before_rooms.json`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.deposits import start_deposit
from tests.support.factories import Player, make_player, wait_until
from tests.support.stack import Stack

HISTORIES = Path(__file__).parent / "histories"


async def _post(http: httpx.AsyncClient, player: Player, amount: int,
                payment_method: str = "pm_card_visa") -> str:
    answer = await http.post("/v1/deposits", json={
        "player_id": player.id, "amount": amount, "currency": "USD",
        "payment_method": payment_method}, headers={**player.headers,
                                                    "Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code in (201, 202), answer.text
    return answer.json()["id"]


async def _status(http: httpx.AsyncClient, player: Player, deposit_id: str) -> str:
    answer = await http.get(f"/v1/deposits/{deposit_id}", headers=player.headers)
    return answer.json()["status"]


async def _save(stack: Stack, deposit_id: str, name: str) -> None:
    handle = stack.client.get_workflow_handle(f"deposit-{deposit_id}")
    await handle.result()
    history = await handle.fetch_history()
    path = HISTORIES / f"deposit_{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")


async def _succeeded_at_once(stack: Stack, http: httpx.AsyncClient, player: Player) -> str:
    return await _post(http, player, 2_500)


async def _declined(stack: Stack, http: httpx.AsyncClient, player: Player) -> str:
    return await _post(http, player, 2_500, "pm_card_chargeDeclined")


async def _three_d_secure_webhook(stack: Stack, http: httpx.AsyncClient, player: Player) -> str:
    deposit_id = await _post(http, player, 4_000, "pm_card_authenticationRequired")
    await wait_until(lambda: _is(http, player, deposit_id, "requires_action"))
    [intent] = stack.payment_intents(deposit_id)
    httpx.post(f"{stack.stripe_url}/_sandbox/payment_intents/{intent['id']}/authenticate",
               json={"outcome": "succeed"}).raise_for_status()
    return deposit_id


async def _is(http: httpx.AsyncClient, player: Player, deposit_id: str, status: str) -> bool:
    return await _status(http, player, deposit_id) == status


async def _processing_at_timeout_succeeded(stack: Stack, http: httpx.AsyncClient,
                                           player: Player) -> str:
    # The payment settles 10 s after confirmation; the stack's deposit timeout is 8 s: the
    # cancel is refused and the deposit waits on (the patched path).
    stack.faults(async_settle_ms=10_000)
    return await _post(http, player, 2_600)


async def _processing_limit_review(stack: Stack, http: httpx.AsyncClient,
                                   player: Player) -> str:
    # No webhooks and a payment that outlasts a 3 s processing limit: review.
    stack.faults(async_settle_ms=30_000, webhook_drop_rate=1.0)
    return await start_deposit(stack, player, 2_700, webhook_wait_seconds=0.5,
                               poll_interval_seconds=0.5, timeout_seconds=1.0,
                               processing_limit_seconds=3.0)


SCENARIOS = {
    "succeeded_at_once": _succeeded_at_once,
    "declined": _declined,
    "three_d_secure_webhook": _three_d_secure_webhook,
    "processing_at_timeout_succeeded": _processing_at_timeout_succeeded,
    "processing_limit_review": _processing_limit_review,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_record(name: str, stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine, purpose="history recording")
    deposit_id = await SCENARIOS[name](stack, http, player)
    await _save(stack, deposit_id, name)
