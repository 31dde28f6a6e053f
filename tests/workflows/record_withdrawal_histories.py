"""Re-record the withdrawal workflow's stored histories from real runs (not part of `make test`).

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/workflows/record_withdrawal_histories.py

Each scenario runs the whole stack (API, worker, Stripe and notify sandboxes, PostgreSQL, the
Temporal dev server), then writes the workflow's history to
tests/workflows/histories/withdrawal_<name>.json, which tests/workflows/test_replay_withdrawal.py
replays against the current workflow code. Re-record after a change meant for new runs only; a
change that breaks the replay of a history running withdrawals may have is a bug, or needs
`workflow.patched`.

The `withdrawal_*_before_rooms.json` histories are NOT re-recorded here: they were recorded from
the workflow before the rooms (issue 8) and its patches `withdrawal-debt-checked-before-payout`
and `withdrawal-rejection-recorded-by-workflow`, and stay, frozen, as the proof that a
withdrawal started before those changes still replays.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

import ledger
from ledger import AccountRef, Leg, Transfer
from settlepay import task_queues
from store import withdrawals as store
from tests.support.factories import Player, card_deposit, fund, make_player, mark_kyc_verified
from tests.support.stack import APPROVAL_THRESHOLD, Stack
from tests.support.withdrawals import (
    add_destination,
    code_for,
    ready_player,
    start,
    submit,
    wait_state,
)
from workflows.contracts.withdrawal import (
    GATEWAY_DEADLINE_SECONDS,
    WORKFLOW,
    Decision,
    Query,
    ReviewDecision,
    Signal,
    WithdrawalRequest,
    WithdrawalResult,
    workflow_id,
)

HISTORIES = Path(__file__).parent / "histories"
Scenario = Callable[[Stack, httpx.AsyncClient], Awaitable[str]]


async def _code(stack: Stack, http: httpx.AsyncClient, player: Player,
                withdrawal_id: str) -> None:
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    answer = await submit(http, player, withdrawal_id,
                          await code_for(stack, player, withdrawal_id))
    assert answer.status_code == 200, answer.text


async def _paid_refund_then_payout(stack: Stack, http: httpx.AsyncClient) -> str:
    player = ready_player(stack, cash=0)
    card_deposit(stack, player, 3_000)
    fund(stack.engine, player, 2_000, tag="winnings")
    withdrawal_id = (await start(http, player, 4_000))["id"]
    await _code(stack, http, player, withdrawal_id)
    return withdrawal_id


async def _approval(stack: Stack, http: httpx.AsyncClient, decision: str) -> str:
    player = ready_player(stack, cash=APPROVAL_THRESHOLD + 10_000)
    withdrawal_id = (await start(http, player, APPROVAL_THRESHOLD + 1))["id"]
    await _code(stack, http, player, withdrawal_id)
    await wait_state(http, player, withdrawal_id, ("awaiting_approval",))
    answer = await http.post(f"/v1/withdrawals/{withdrawal_id}/review", headers=player.operator,
                             json={"decision": decision, "note": "history recording"})
    assert answer.status_code == 202, answer.text
    return withdrawal_id


async def _approval_approved(stack: Stack, http: httpx.AsyncClient) -> str:
    return await _approval(stack, http, "approve")


async def _approval_rejected(stack: Stack, http: httpx.AsyncClient) -> str:
    return await _approval(stack, http, "reject")


async def _cancelled_by_player(stack: Stack, http: httpx.AsyncClient) -> str:
    player = ready_player(stack, cash=2_000)
    withdrawal_id = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    answer = await http.post(f"/v1/withdrawals/{withdrawal_id}/cancel", headers=player.headers)
    assert answer.status_code == 200, answer.text
    return withdrawal_id


async def _direct(stack: Stack, amount: int, cash: int, *,
                  second_factor_timeout_seconds: float = 600.0,
                  gateway_deadline_seconds: float = GATEWAY_DEADLINE_SECONDS) -> tuple[str, Player]:
    """A withdrawal row written here, its workflow started straight on Temporal with short
    timings."""
    player = make_player(stack.engine, purpose="history recording")
    mark_kyc_verified(stack.engine, player)
    fund(stack.engine, player, cash)
    withdrawal_id = f"wd_hist_{player.id[-16:]}"
    with stack.engine.begin() as conn:
        store.insert(conn, withdrawal_id=withdrawal_id, player_id=player.id,
                     partner_id=player.partner_id, amount=amount, currency="USD")
    request = WithdrawalRequest(withdrawal_id=withdrawal_id, player_id=player.id,
                                partner_id=player.partner_id, amount=amount, currency="USD",
                                actor="system:history", approval_threshold=APPROVAL_THRESHOLD,
                                payout_poll_seconds=0.3,
                                second_factor_timeout_seconds=second_factor_timeout_seconds,
                                gateway_deadline_seconds=gateway_deadline_seconds)
    await stack.client.start_workflow(WORKFLOW, request, id=workflow_id(withdrawal_id),
                                      task_queue=task_queues.MAIN, result_type=WithdrawalResult)
    return withdrawal_id, player


async def _cancelled_by_timeout(stack: Stack, http: httpx.AsyncClient) -> str:
    """No code comes; the deadline is short so that the recording is quick."""
    withdrawal_id, _ = await _direct(stack, 1_000, 2_000, second_factor_timeout_seconds=1.0)
    return withdrawal_id


async def _rejected_for_debt_before_payout(stack: Stack, http: httpx.AsyncClient) -> str:
    player = ready_player(stack, cash=5_000)
    withdrawal_id = (await start(http, player, 4_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    with stack.engine.begin() as conn:
        assert ledger.post(conn, Transfer(
            key=f"history-clawback-{player.id}", kind="resettlement", reference="history",
            legs=(Leg(AccountRef.player_cash(player.id, "USD"), -3_000,
                      shortfall_to=AccountRef.player_debt(player.id, "USD")),
                  Leg(AccountRef.house_revenue("USD"), 3_000)))).ok
    answer = await submit(http, player, withdrawal_id,
                          await code_for(stack, player, withdrawal_id))
    assert answer.status_code == 200, answer.text
    return withdrawal_id


async def _payout_failed(stack: Stack, http: httpx.AsyncClient) -> str:
    player = ready_player(stack, cash=4_000)
    await add_destination(http, player, "ba_fail_closed")
    withdrawal_id = (await start(http, player, 2_500, payout_destination="ba_fail_closed"))["id"]
    await _code(stack, http, player, withdrawal_id)
    return withdrawal_id


async def _payout_review_retried(stack: Stack, http: httpx.AsyncClient) -> str:
    """The gateway answers 500 past the step's deadline; an operator has it tried again."""
    stack.faults(fail_next=1_000, error_status=500, paths=["/v1/payouts"], methods=["POST"])
    withdrawal_id, player = await _direct(stack, 1_000, 2_000, gateway_deadline_seconds=2.0)
    await _code(stack, http, player, withdrawal_id)
    handle = stack.client.get_workflow_handle(workflow_id(withdrawal_id))
    await wait_state(http, player, withdrawal_id, ("payout_review",))
    assert await handle.query(Query.STATE, result_type=str) == "payout_review"
    stack.faults()
    await handle.signal(Signal.REVIEW, ReviewDecision(Decision.APPROVE, "operator:history"))
    return withdrawal_id


SCENARIOS: dict[str, Scenario] = {
    "paid_refund_then_payout": _paid_refund_then_payout,
    "approval_approved": _approval_approved,
    "approval_rejected": _approval_rejected,
    "cancelled_by_player": _cancelled_by_player,
    "cancelled_by_timeout": _cancelled_by_timeout,
    "rejected_for_debt_before_payout": _rejected_for_debt_before_payout,
    "payout_failed": _payout_failed,
    "payout_review_retried": _payout_review_retried,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_record(name: str, stack: Stack, worker, http: httpx.AsyncClient) -> None:
    withdrawal_id = await SCENARIOS[name](stack, http)
    handle = stack.client.get_workflow_handle(workflow_id(withdrawal_id))
    await handle.result()
    history = await handle.fetch_history()
    path = HISTORIES / f"withdrawal_{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
