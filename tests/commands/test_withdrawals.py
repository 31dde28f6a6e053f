"""The withdrawal commands under races (issue 9, item 9), against the real database and ledger:
two closed-loop plans of one player interleaved on two connections, and the legs a failed
withdrawal never sent. After each, `ledger check` is clean."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy import Connection, text

from commands import withdrawals as commands
from settlepay.db import run_in_transaction
from store import withdrawals as store
from tests.support.factories import card_deposit, ledger_violations, wait_until
from tests.support.withdrawals import ready_player
from workflows.contracts.withdrawal import Release, WithdrawalRequest, WithdrawalState


def withdrawal(engine, player, amount: int) -> WithdrawalRequest:
    """A withdrawal row in `checking`, as the API writes it."""
    withdrawal_id = f"wd_test_{uuid.uuid4().hex[:16]}"
    with engine.begin() as conn:
        store.insert(conn, withdrawal_id=withdrawal_id, player_id=player.id,
                     partner_id=player.partner_id, amount=amount, currency="USD")
    return WithdrawalRequest(withdrawal_id=withdrawal_id, player_id=player.id,
                             partner_id=player.partner_id, amount=amount, currency="USD",
                             actor="system:test")


def plan_of(rows: list[Any]) -> list[tuple[str, int, str | None]]:
    return [(row["method"], row["amount"], row["deposit_id"]) for row in rows]


async def test_two_concurrent_refund_plans_never_both_refund_one_deposit(stack):
    player = ready_player(stack, cash=3_000)
    deposit_id = card_deposit(stack, player, 3_000)             # cash 6,000: 3,000 refundable
    first, second = (withdrawal(stack.engine, player, 3_000) for _ in range(2))

    # Connection A plans the first withdrawal and has not committed yet ...
    conn_a = stack.engine.connect()
    tx_a = conn_a.begin()
    first_plan = plan_of(commands.plan_payouts(conn_a, first))
    # ... while connection B plans the second one.
    b_pid: list[int] = []
    b_plan: list[list[tuple[str, int, str | None]]] = []

    def plan_second(conn: Connection) -> list[Any]:
        b_pid.append(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return commands.plan_payouts(conn, second)

    thread = threading.Thread(target=lambda: b_plan.append(
        plan_of(run_in_transaction(stack.engine, plan_second))))
    thread.start()

    def b_waits_or_is_done() -> bool:
        if b_plan:
            return True
        if not b_pid:
            return False
        with stack.engine.connect() as probe:
            return probe.execute(text("SELECT wait_event_type FROM pg_stat_activity "
                                      "WHERE pid = :pid"), {"pid": b_pid[0]}).scalar() == "Lock"
    try:
        await wait_until(b_waits_or_is_done)
        tx_a.commit()
    finally:
        conn_a.close()
        thread.join(timeout=20)

    assert first_plan == [("refund", 3_000, deposit_id)]
    # B planned after A committed: the deposit had nothing left to refund.
    assert b_plan == [[("payout", 3_000, None)]]
    assert ledger_violations(stack.engine) == []


def test_unsent_legs_of_a_failed_withdrawal_give_the_deposit_its_refundable_amount_back(stack):
    player = ready_player(stack, cash=2_000)
    deposit_id = card_deposit(stack, player, 3_000)
    failed = withdrawal(stack.engine, player, 4_000)

    def hold_and_plan(conn: Connection) -> list[Any]:
        assert commands.hold(conn, failed) is None
        return commands.plan_payouts(conn, failed)

    legs = run_in_transaction(stack.engine, hold_and_plan)
    assert plan_of(legs) == [("refund", 3_000, deposit_id), ("payout", 1_000, None)]
    # The withdrawal fails before any leg is sent (e.g. a payout review given up).
    run_in_transaction(stack.engine, lambda conn: commands.release(conn, Release(
        failed.withdrawal_id, WithdrawalState.FAILED, "payout_failed", "given up",
        "system:test")))
    with stack.engine.connect() as conn:
        assert [(p["n"], p["state"]) for p in store.payouts(conn, failed.withdrawal_id)] == [
            (1, "cancelled"), (2, "cancelled")]

    later = withdrawal(stack.engine, player, 3_000)
    later_plan = run_in_transaction(stack.engine,
                                    lambda conn: commands.plan_payouts(conn, later))
    assert plan_of(later_plan) == [("refund", 3_000, deposit_id)]
    assert ledger_violations(stack.engine) == []
