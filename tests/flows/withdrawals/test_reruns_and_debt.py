"""Withdrawals under reruns and late clawbacks (issue 9, items 4 and 7), end to end over the real
API, Temporal dev server and sandboxes. After each scenario the ledger's invariants hold."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy

import ledger
from commands.second_factor import one_time_code
from ledger import AccountRef, Leg, Transfer
from settlepay import task_queues
from store import withdrawals as store
from tests.support.factories import balance, events, ledger_violations, wait_until
from tests.support.withdrawals import FINAL, code_for, ready_player, start, submit, wait_state
from workflows.contracts.withdrawal import (
    WORKFLOW,
    Query,
    SecondFactorCode,
    Update,
    WithdrawalRequest,
    WithdrawalResult,
    workflow_id,
)

UNTOUCHED = {"cash": 2_000, "held": 0, "available": 2_000, "pending_withdrawal": 0,
             "pending_withdrawal_incoming": 0}


def payouts_at_gateway(stack) -> int:
    return httpx.get(f"{stack.stripe_url}/_sandbox/stats").json()["payouts"]


async def cancel(http, player, withdrawal_id: str) -> None:
    answer = await http.post(f"/v1/withdrawals/{withdrawal_id}/cancel", headers=player.headers,
                             json={})
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled", answer.text


# --- item 4: a closed money workflow never runs again ------------------------------------------

async def test_a_retried_post_after_the_withdrawal_closed_answers_it_and_never_runs_it_again(
        stack, worker, http):
    player = ready_player(stack, cash=2_000)
    key = uuid.uuid4().hex
    withdrawal_id = (await start(http, player, 1_000, idempotency_key=key))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    handle = stack.client.get_workflow_handle(workflow_id(withdrawal_id))
    first_run = (await handle.describe()).run_id
    await cancel(http, player, withdrawal_id)

    # The first POST answered 500 after the workflow had started: its Idempotency-Key claim
    # was released (bound to the same request), so the client's retry runs the route again.
    with stack.engine.begin() as conn:
        conn.execute(text("""
            UPDATE idempotency_records SET response_status = NULL, response_headers = NULL,
                   response_body = NULL, completed_at = NULL, locked_at = '-infinity'
             WHERE idempotency_key = :key"""), {"key": key})
    again = await start(http, player, 1_000, idempotency_key=key)

    assert (again["id"], again["state"]) == (withdrawal_id, "cancelled")
    assert (await handle.describe()).run_id == first_run        # no second run
    assert balance(stack.engine, player) == UNTOUCHED
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.cancelled"]
    assert ledger_violations(stack.engine) == []


async def test_a_second_run_of_a_closed_withdrawal_never_pays_out_its_voided_hold(stack, worker,
                                                                                   http):
    player = ready_player(stack, cash=2_000)
    withdrawal_id = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    await cancel(http, player, withdrawal_id)
    payouts_before = payouts_at_gateway(stack)

    # The same workflow id started again after it closed (what the default id-reuse policy let
    # a retried POST do): the hold's key replays the first run's `ok` of a hold now voided.
    request = WithdrawalRequest(withdrawal_id=withdrawal_id, player_id=player.id,
                                partner_id=player.partner_id, amount=1_000, currency="USD",
                                actor="system:test")
    handle = await stack.client.start_workflow(
        WORKFLOW, request, id=workflow_id(withdrawal_id), task_queue=task_queues.MAIN,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, result_type=WithdrawalResult)

    async def progressed() -> str | None:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return "closed"
        state = await handle.query(Query.STATE, result_type=str)
        return "asks for a code" if state == "awaiting_2fa" else None

    if await wait_until(progressed) == "asks for a code":   # the player answers it again
        await handle.execute_update(Update.SUBMIT_SECOND_FACTOR, SecondFactorCode(
            one_time_code(stack.settings.otp_code_secret, withdrawal_id)))
    result = await handle.result()

    assert (result.state, result.reason_code) == ("rejected", "hold_not_pending")
    assert payouts_at_gateway(stack) == payouts_before
    with stack.engine.connect() as conn:
        assert store.get(conn, withdrawal_id)["state"] == "cancelled"
        assert store.payouts(conn, withdrawal_id) == []
    assert balance(stack.engine, player) == UNTOUCHED
    assert ledger_violations(stack.engine) == []


# --- item 7: open debt again before the payout --------------------------------------------------

async def test_a_debt_arising_during_the_second_factor_is_repaid_from_the_hold_and_nothing_is_paid(
        stack, worker, http):
    player = ready_player(stack, cash=5_000)
    withdrawal_id = (await start(http, player, 4_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    payouts_before = payouts_at_gateway(stack)

    # A resettlement clawback while 4,000 is held: the 1,000 available is taken, the other
    # 2,000 becomes debt.
    with stack.engine.begin() as conn:
        assert ledger.post(conn, Transfer(
            key=f"test-clawback-{player.id}", kind="resettlement", reference="test-clawback",
            legs=(Leg(AccountRef.player_cash(player.id, "USD"), -3_000,
                      shortfall_to=AccountRef.player_debt(player.id, "USD")),
                  Leg(AccountRef.house_revenue("USD"), 3_000)))).ok
    answer = await submit(http, player, withdrawal_id,
                          await code_for(stack, player, withdrawal_id))
    assert answer.status_code == 200, answer.text
    done = await wait_state(http, player, withdrawal_id, FINAL)

    assert (done["state"], done["reason_code"], done["paid_amount"]) == ("rejected", "open_debt", 0)
    assert done["payouts"] == [] and payouts_at_gateway(stack) == payouts_before
    # The hold was voided and the cash it gave back repaid the debt first.
    assert balance(stack.engine, player) == {"cash": 2_000, "held": 0, "available": 2_000,
                                             "pending_withdrawal": 0,
                                             "pending_withdrawal_incoming": 0}
    with stack.engine.connect() as conn:
        debt = ledger.balance(conn, AccountRef.player_debt(player.id, "USD")).posted
    assert debt == 0
    finished = [s for s in done["steps"] if s["step"] == "finished"]
    assert finished[0]["detail"]["debt_settled"] == 2_000
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.rejected"]
    assert ledger_violations(stack.engine) == []
