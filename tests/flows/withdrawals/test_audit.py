"""What a withdrawal writes to the audit trail (issue 9, item 15): every payout leg, and an
operator's review only once the workflow took the decision."""

from __future__ import annotations

from audit import verify as audit_verify
from tests.support.factories import audit_actions, card_deposit, fund, ledger_violations
from tests.support.stack import APPROVAL_THRESHOLD
from tests.support.withdrawals import (
    FINAL,
    code_for,
    confirm,
    ready_player,
    start,
    submit,
    wait_state,
)


def reviews(engine, withdrawal_id: str) -> list[str]:
    return [a for a in audit_actions(engine, withdrawal_id) if a.startswith("withdrawal.review.")]


async def test_payout_legs_are_audited(stack, worker, http):
    player = ready_player(stack, cash=0)
    card_deposit(stack, player, 3_000)
    fund(stack.engine, player, 2_000, tag="winnings")
    withdrawal_id = (await start(http, player, 4_000))["id"]
    done = await confirm(stack, http, player, withdrawal_id)
    assert done["state"] == "paid"
    legs = [a for a in audit_actions(stack.engine, withdrawal_id)
            if a.startswith("withdrawal.payout.")]
    assert legs == ["withdrawal.payout.started", "withdrawal.payout.planned",
                    "withdrawal.payout.refund_confirmed", "withdrawal.payout.payout_confirmed"]
    assert ledger_violations(stack.engine) == []


async def test_a_second_review_of_one_approval_writes_no_audit_record(stack, http):
    player = ready_player(stack, cash=APPROVAL_THRESHOLD + 10_000)
    stack.faults()
    async with stack.worker():
        withdrawal_id = (await start(http, player, APPROVAL_THRESHOLD + 1))["id"]
        await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
        # A review before the withdrawal waits for one is refused, and leaves no trace.
        early = await http.post(f"/v1/withdrawals/{withdrawal_id}/review",
                                headers=player.operator, json={"decision": "approve"})
        assert early.status_code == 409, early.text
        assert early.json()["code"] == "withdrawal_not_awaiting_approval"
        code = await code_for(stack, player, withdrawal_id)
        assert (await submit(http, player, withdrawal_id, code)).status_code == 200
        await wait_state(http, player, withdrawal_id, ("awaiting_approval",))
    assert reviews(stack.engine, withdrawal_id) == []

    # With the worker away, two operators decide before the workflow takes either decision.
    for decision in ("approve", "reject"):
        answer = await http.post(f"/v1/withdrawals/{withdrawal_id}/review",
                                 headers=player.operator, json={"decision": decision})
        assert answer.status_code == 202, answer.text
    async with stack.worker():
        done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "paid"
    assert reviews(stack.engine, withdrawal_id) == ["withdrawal.review.approve"]
    with stack.engine.connect() as conn:
        assert audit_verify(conn).ok
    assert ledger_violations(stack.engine) == []
