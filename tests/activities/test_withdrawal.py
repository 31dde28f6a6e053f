"""Withdrawal activities against the real database, ledger and Stripe sandbox (over HTTP),
run with Temporal's ActivityEnvironment: no later step treats a voided hold as held (issue 9,
item 4), and a payout first sent before the gateway forgets idempotency keys is looked for at
the gateway before anything is created again (item 12)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection, text
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import ledger
from activities.withdrawal import WithdrawalActivities
from commands import withdrawals as commands
from ledger import AccountRef
from settlepay.db import run_in_transaction
from store import withdrawals as store
from tests.support.factories import ledger_violations
from tests.support.stack import Stack
from tests.support.withdrawals import ready_player
from workflows.contracts.withdrawal import (
    LegMethod,
    LegState,
    PayoutLeg,
    Release,
    Step,
    WithdrawalRequest,
    WithdrawalState,
)


def activities(stack: Stack) -> WithdrawalActivities:
    providers = stack.providers()
    return WithdrawalActivities(stack.engine, stack.settings, providers.gateway,
                                providers.notifier)


def paying(stack: Stack, amount: int, cash: int) -> tuple[WithdrawalRequest, list[PayoutLeg]]:
    """A withdrawal held, its payout begun and planned (no deposits: one payout leg)."""
    player = ready_player(stack, cash=cash)
    withdrawal_id = f"wd_test_{uuid.uuid4().hex[:16]}"
    req = WithdrawalRequest(withdrawal_id=withdrawal_id, player_id=player.id,
                            partner_id=player.partner_id, amount=amount, currency="USD",
                            actor="system:test")

    def work(conn: Connection) -> list[PayoutLeg]:
        store.insert(conn, withdrawal_id=withdrawal_id, player_id=player.id,
                     partner_id=player.partner_id, amount=amount, currency="USD")
        assert commands.hold(conn, req) is None
        commands.record(conn, Step(withdrawal_id, WithdrawalState.PAYING, "payout", "started"))
        return [PayoutLeg(withdrawal_id, row["n"], LegMethod(row["method"]), row["amount"],
                          row["currency"], row["idempotency_key"])
                for row in commands.plan_payouts(conn, req)]

    return req, run_in_transaction(stack.engine, work)


def void(stack: Stack, req: WithdrawalRequest) -> None:
    run_in_transaction(stack.engine, lambda conn: commands.release(conn, Release(
        req.withdrawal_id, WithdrawalState.CANCELLED, "cancelled_by_player", "test",
        "system:test")))


def payout_posts(stack: Stack) -> int:
    return len([r for r in stack.gateway_requests("/v1/payouts") if r["method"] == "POST"])


def test_complete_on_a_voided_hold_is_a_refusal_never_retried(stack):
    req, _ = paying(stack, 1_000, cash=2_000)
    void(stack, req)
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(activities(stack).complete, req)
    assert refused.value.non_retryable
    assert refused.value.type == "hold_not_pending"
    with stack.engine.connect() as conn:
        assert ledger.balance(conn, AccountRef.player_cash(req.player_id, "USD")).available \
            == 2_000
    assert ledger_violations(stack.engine) == []


def test_a_payout_is_never_sent_for_a_voided_hold(stack):
    req, [leg] = paying(stack, 1_000, cash=2_000)
    void(stack, req)
    before = payout_posts(stack)
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(activities(stack).send_payout, leg)
    assert refused.value.non_retryable and refused.value.type == "hold_not_pending"
    assert payout_posts(stack) == before
    assert ledger_violations(stack.engine) == []


def test_a_payout_sent_before_the_gateway_forgets_its_key_is_found_there_not_created_again(
        stack):
    req, [leg] = paying(stack, 1_000, cash=2_000)
    acts = activities(stack)
    first = ActivityEnvironment().run(acts.send_payout, leg)
    assert first.gateway_ref is not None and first.gateway_ref.startswith("po_")
    posts = payout_posts(stack)

    # A day later (an operator retried the leg after its deadline): the gateway may have
    # forgotten the key, and the same key would create a second payout there.
    with stack.engine.begin() as conn:
        conn.execute(text("""UPDATE withdrawal_payouts
                                SET first_sent_at = first_sent_at - interval '25 hours'
                              WHERE withdrawal_id = :id"""), {"id": req.withdrawal_id})
    again = ActivityEnvironment().run(acts.send_payout, leg)

    assert again.gateway_ref == first.gateway_ref
    assert again.state in (LegState.PENDING, LegState.CONFIRMED)
    assert payout_posts(stack) == posts            # looked up, not created again
    assert ledger_violations(stack.engine) == []
