"""Time-skipping: no second-factor code within 10 minutes cancels the withdrawal and voids the
hold (the test server skips the ten minutes)."""

from __future__ import annotations

from settlepay import task_queues
from store import withdrawals as store
from tests.support.factories import balance, events, ledger_violations
from tests.support.stack import Stack
from tests.support.withdrawals import ready_player
from workflows.contracts.withdrawal import (
    WORKFLOW,
    WithdrawalRequest,
    WithdrawalResult,
    workflow_id,
)


async def test_no_code_within_ten_minutes_cancels_and_releases_the_cash(stack: Stack,
                                                                        time_skipping_env):
    client = time_skipping_env.client
    player = ready_player(stack, cash=3_000)
    withdrawal_id = f"wd_expiry_{player.id[-12:]}"
    with stack.engine.begin() as conn:
        store.insert(conn, withdrawal_id=withdrawal_id, player_id=player.id,
                     partner_id=player.partner_id, amount=2_000, currency="USD")
    request = WithdrawalRequest(withdrawal_id=withdrawal_id, player_id=player.id,
                                partner_id=player.partner_id, amount=2_000, currency="USD",
                                actor="system:test", second_factor_timeout_seconds=600,
                                index_search_attributes=False)
    async with stack.worker(client):
        handle = await client.start_workflow(WORKFLOW, request, id=workflow_id(withdrawal_id),
                                             task_queue=task_queues.MAIN,
                                             result_type=WithdrawalResult)
        result = await handle.result()
    assert (result.state, result.reason_code) == ("cancelled", "second_factor_expired")
    # The code was sent (the player simply never used it), then the hold was voided.
    assert len(stack.outbox(player.email)) == 1
    with stack.engine.connect() as conn:
        row = store.get(conn, withdrawal_id)
        steps = [(s["step"], s["outcome"]) for s in store.steps(conn, withdrawal_id)]
    assert row["state"] == "cancelled"
    assert steps == [("checks", "passed"), ("hold", "held"), ("second_factor", "challenged"),
                     ("finished", "cancelled")]
    assert balance(stack.engine, player) == {"cash": 3_000, "held": 0, "available": 3_000,
                                             "pending_withdrawal": 0,
                                             "pending_withdrawal_incoming": 0}
    assert events(stack.engine, withdrawal_id) == ["withdrawal.cancelled"]
    assert ledger_violations(stack.engine) == []
