"""Every break class produced for real against the Stripe sandbox and our database, found by a
run with the evidence of all three sides; safe ones repaired through the normal paths."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import ledger
from commands import deposits as deposit_commands
from commands.reconciliation import fee_key
from ledger import AccountRef, Leg, Transfer
from store import withdrawals as withdrawal_store
from tests.support import reconciliation as rec
from tests.support.deposits import deposit_row
from tests.support.factories import (
    audit_actions,
    cash,
    ledger_violations,
    make_player,
    mark_kyc_verified,
    wait_until,
)
from tests.support.stack import Stack
from workflows.contracts.deposit import Failure
from workflows.contracts.withdrawal import LegState, WithdrawalState


@pytest.fixture
def quiet_gateway(stack: Stack) -> Iterator[Stack]:
    """No webhooks from the sandbox while a scenario builds its breaks (a webhook would settle
    some of them through the deposit's own path before the run could see them)."""
    config = httpx.get(f"{stack.stripe_url}/_sandbox/config").json()
    httpx.post(f"{stack.stripe_url}/_sandbox/config", json={"webhook_url": ""})
    stack.faults()
    yield stack
    httpx.post(f"{stack.stripe_url}/_sandbox/config",
               json={"webhook_url": config["webhook_url"], "fee_override": None})


async def test_clean_deposits_reconcile_with_their_fees_booked_and_clearing_exact(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    before = rec.clearing(stack.engine)
    for amount in (2_500, 10_000):
        rec.paid_deposit(stack, player, amount)
    first = await rec.run(stack, start)
    assert first.run["verdict"] == "reconciled", first.outcome
    assert (first.run["items"], first.run["matched"], first.run["fees_booked"]) == (2, 2, 2)
    assert first.run["residual"] == {}
    fees = 103 + 320            # 2.9 % + 30 of each, Stripe's pricing
    assert rec.clearing(stack.engine) - before == -(12_500 - fees)   # what Stripe owes us
    again = await rec.run(stack, start, end=first.outcome.window.end)
    assert (again.run["verdict"], again.run["fees_booked"], again.run["repaired"]) == (
        "reconciled", 0, 0)
    assert rec.clearing(stack.engine) - before == -(12_500 - fees)
    assert ledger_violations(stack.engine) == []


async def test_a_deposit_charged_but_failed_here_is_found_then_credited_through_its_own_path(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    deposit_id = rec.new_deposit(stack, player, 4_000)
    intent = rec.charge(stack, deposit_id, player, 4_000)
    with stack.engine.begin() as conn:
        deposit_commands.fail(conn, Failure(deposit_id, "timeout", "no answer", intent.id))
    found = await rec.run(stack, start, repair=False)
    assert found.run["verdict"] == "breaks" and found.run["counts"] == {
        "charged_not_credited": 1}
    item = rec.breaks_of(stack.engine, found.run["id"])[deposit_id][0]
    assert (item["class"], item["status"], item["repair"]) == (
        "charged_not_credited", "open", "credit_deposit")
    assert item["evidence"]["gateway"][0]["id"] == intent.id
    assert item["evidence"]["ours"][0]["status"] == "failed"
    assert item["evidence"]["ledger"] == []
    assert found.run["residual"] == {"USD": 4_000}
    repaired = await rec.run(stack, start)
    assert repaired.run["verdict"] == "reconciled" and repaired.run["repaired"] == 1
    assert cash(stack.engine, player.id) == 4_000
    assert rec.breaks_of(stack.engine, repaired.run["id"])[deposit_id][0]["status"] == "repaired"
    assert "deposit.succeeded" in audit_actions(stack.engine, deposit_id)
    third = await rec.run(stack, start)
    assert (third.run["verdict"], third.run["repaired"]) == ("reconciled", 0)
    assert cash(stack.engine, player.id) == 4_000
    assert ledger_violations(stack.engine) == []


async def test_a_refund_sent_twice_is_a_duplicate_effect_for_an_operator(quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    _, intent = rec.paid_deposit(stack, player, 6_000)
    gateway = stack.gateway()
    wid = rec.paid_withdrawal(stack, player, 1_000, gateway_ref=None, method="refund")
    # the same leg sent twice under two different idempotency keys
    sent = [gateway.create_refund(payment_intent=intent.id, amount=1_000,
                                  idempotency_key=f"{wid}:refund:{n}",
                                  metadata={"withdrawal_id": wid, "leg": "1"}) for n in (1, 2)]
    with stack.engine.begin() as conn:
        withdrawal_store.mark_payout(conn, wid, 1, state=LegState.CONFIRMED,
                                     gateway_ref=sent[0].id)
    result = await rec.run(stack, start)
    item = rec.breaks_of(stack.engine, result.run["id"])[f"{wid}:1"][0]
    assert (item["class"], item["status"], item["repair"], item["delta"]) == (
        "duplicate_effect", "open", None, -1_000)
    assert {e["id"] for e in item["evidence"]["gateway"]} == {s.id for s in sent}
    assert item["evidence"]["ledger"][0]["amount"] == 1_000
    assert result.run["verdict"] == "breaks"


async def test_a_confirmed_payout_the_gateway_never_made_is_payout_missing(quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    wid = rec.paid_withdrawal(stack, player, 2_000, gateway_ref="po_nowhere")
    result = await rec.run(stack, start)
    item = rec.breaks_of(stack.engine, result.run["id"])[f"{wid}:1"][0]
    assert (item["class"], item["delta"]) == ("payout_missing", 2_000)
    assert item["evidence"]["gateway"] == []
    assert item["evidence"]["ours"][1]["gateway_ref"] == "po_nowhere"
    assert item["evidence"]["ledger"][0]["kind"] == "withdrawal_clear"


async def test_a_paid_payout_matches_and_a_stuck_withdrawal_is_a_hold_open_too_long(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    wid = rec.paid_withdrawal(stack, player, 1_500, gateway_ref=None)
    payout = stack.gateway().create_payout(amount=1_500, currency="usd",
                                           idempotency_key=f"withdrawal-{wid}:payout",
                                           metadata={"withdrawal_id": wid, "leg": "1"})
    with stack.engine.begin() as conn:
        withdrawal_store.mark_payout(conn, wid, 1, state=LegState.CONFIRMED,
                                     gateway_ref=payout.id)
    stuck = rec.paid_withdrawal(stack, player, 700, gateway_ref=None,
                                state=WithdrawalState.PAYING, clear=False)
    result = await rec.run(stack, start, hold_max_seconds=0)
    found = rec.breaks_of(stack.engine, result.run["id"])
    assert wid not in found and f"{wid}:1" not in found
    assert [b["class"] for b in found[stuck]] == ["hold_open_too_long"]
    assert found[stuck][0]["evidence"]["ours"][0]["status"] == "paying"
    assert result.run["counts"] == {"hold_open_too_long": 1}


async def test_gateway_side_breaks_dispute_foreign_refund_fee_amount_and_no_charge(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    disputed, disputed_intent = rec.paid_deposit(stack, player, 5_000)
    rec.dispute(stack, disputed_intent)
    refunded, refunded_intent = rec.paid_deposit(stack, player, 3_000)
    stack.gateway().create_refund(payment_intent=refunded_intent.id, idempotency_key="dash-1")
    httpx.post(f"{stack.stripe_url}/_sandbox/config", json={"fee_override": 999})
    overcharged, _ = rec.paid_deposit(stack, player, 2_000)
    httpx.post(f"{stack.stripe_url}/_sandbox/config", json={"fee_override": None})
    first = await rec.run(stack, start)
    assert first.run["fees_booked"] == 3
    short = rec.new_deposit(stack, player, 4_000)
    short_intent = rec.charge(stack, short, player, 5_000)
    rec.credit(stack, short, player, 4_000, short_intent)
    unpaid = rec.new_deposit(stack, player, 1_200)
    declined = rec.charge(stack, unpaid, player, 1_200, card="pm_card_chargeDeclined")
    assert declined.status == "requires_payment_method"
    rec.credit(stack, unpaid, player, 1_200, declined)
    stray = stack.gateway().create_payout(amount=300, currency="usd", idempotency_key="stray-1")
    result = await rec.run(stack, start)
    found = rec.breaks_of(stack.engine, result.run["id"])
    assert [b["class"] for b in found[disputed]] == ["dispute"]
    assert found[disputed][0]["delta"] == -(5_000 + 1_500)
    assert [b["class"] for b in found[refunded]] == ["status_mismatch"]
    assert [b["class"] for b in found[short]] == ["amount_mismatch"]
    assert [b["class"] for b in found[unpaid]] == ["credited_not_charged"]
    assert [b["class"] for b in found[stray.id]] == ["unclassified"]
    assert overcharged not in found     # its fee (999) was booked as the gateway took it
    assert result.run["verdict"] == "breaks"
    assert all(b[0]["evidence"]["gateway"] for b in found.values())
    assert all(b[0]["evidence"]["ours"] for k, b in found.items() if k != stray.id)
    assert all(b[0]["evidence"]["ledger"] for k, b in found.items() if k != stray.id)
    assert result.run["residual"]["USD"] != 0
    assert ledger_violations(stack.engine) == []


async def test_a_booked_fee_that_differs_from_the_gateways_is_a_fee_mismatch(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    deposit_id, intent = rec.paid_deposit(stack, player, 10_000)
    with stack.engine.begin() as conn:   # booked at another price, by hand
        assert ledger.post(conn, Transfer(
            key=fee_key(intent.latest_charge), kind="gateway_fee",
            reference=intent.latest_charge,
            legs=(Leg(AccountRef.house_revenue("USD"), -300),
                  Leg(AccountRef.gateway_clearing("stripe", "USD"), 300)))).ok
    result = await rec.run(stack, start)
    item = rec.breaks_of(stack.engine, result.run["id"])[deposit_id][0]
    assert (item["class"], item["repair"], item["delta"]) == ("fee_mismatch", None, -20)
    assert item["evidence"]["ledger"][0]["amount"] == 300


async def test_an_orphaned_pending_deposit_restarts_its_workflow_and_then_reconciles(
        quiet_gateway: Stack, worker):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    mark_kyc_verified(stack.engine, player)
    deposit_id = rec.new_deposit(stack, player, 2_200)
    found = await rec.run(stack, start, repair=False)
    item = rec.breaks_of(stack.engine, found.run["id"])[deposit_id][0]
    assert (item["class"], item["repair"]) == ("orphaned_pending_deposit",
                                               "restart_deposit_workflow")
    repaired = await rec.run(stack, start, client=stack.client)
    assert repaired.run["repaired"] == 1
    await wait_until(lambda: deposit_row(stack.engine, deposit_id)["status"] in (
        "succeeded", "failed"), timeout=20)
    assert deposit_row(stack.engine, deposit_id)["status"] == "succeeded"
    after = await rec.run(stack, start, client=stack.client)
    assert (after.run["verdict"], after.run["repaired"]) == ("reconciled", 0), after.outcome
    again = await rec.run(stack, start, client=stack.client)
    assert again.run["repaired"] == 0          # restarting never runs a deposit twice
    assert cash(stack.engine, player.id) == 2_200


async def test_a_payment_that_succeeded_seconds_ago_is_pending_not_a_break(quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    deposit_id = rec.new_deposit(stack, player, 1_000)
    rec.charge(stack, deposit_id, player, 1_000)
    result = await rec.run(stack, start, grace_seconds=600)
    assert result.run["verdict"] == "reconciled_with_pending" and result.run["pending"] == 1
    assert rec.breaks_of(stack.engine, result.run["id"]) == {}


async def test_rerunning_a_closed_window_gives_the_same_verdict_and_queues_nothing_twice(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    wid = rec.paid_withdrawal(stack, player, 1_300, gateway_ref="po_never")
    rec.paid_deposit(stack, player, 1_000)
    end = await rec.next_second()
    first = await rec.run(stack, start, end=end)
    again = await rec.run(stack, start, end=end)
    keys = ("verdict", "items", "matched", "counts", "residual")
    assert {k: first.run[k] for k in keys} == {k: again.run[k] for k in keys}
    assert first.run["verdict"] == "breaks"
    first_break = rec.breaks_of(stack.engine, first.run["id"])
    assert first_break == {}         # the rerun saw it last: it is the same open break
    [item] = rec.breaks_of(stack.engine, again.run["id"])[f"{wid}:1"]
    assert (item["run_id"], item["last_run_id"], item["status"]) == (
        first.run["id"], again.run["id"], "open")


async def test_a_closed_window_keeps_its_verdict_when_the_gateway_moves_after_its_end(
        quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    player = make_player(stack.engine)
    _, refunded = rec.paid_deposit(stack, player, 2_000)
    _, disputed = rec.paid_deposit(stack, player, 3_000)
    wid = rec.paid_withdrawal(stack, player, 1_500, gateway_ref="po_sent_late")
    until = await rec.next_second()
    first = await rec.run(stack, start, end=until)
    assert first.run["verdict"] == "breaks"
    assert first.run["counts"] == {"payout_missing": 1}
    await rec.next_second()        # what follows is created after the window's cut-off
    gateway = stack.gateway()
    late = [gateway.create_refund(payment_intent=refunded.id, amount=500,
                                  idempotency_key=f"late-refund-{refunded.id}").created,
            rec.dispute(stack, disputed)["created"],
            gateway.create_payout(amount=1_500, currency="USD",
                                  idempotency_key=f"withdrawal-{wid}:payout:late",
                                  metadata={"withdrawal_id": wid, "leg": "1"}).created]
    assert min(late) > until
    again = await rec.run(stack, start, end=until)
    keys = ("verdict", "items", "matched", "pending", "counts", "residual", "matched_amount",
            "total_amount")
    assert {k: again.run[k] for k in keys} == {k: first.run[k] for k in keys}
    assert list(rec.breaks_of(stack.engine, again.run["id"])) == [f"{wid}:1"]
    assert ledger_violations(stack.engine) == []


async def test_a_gateway_that_cannot_be_read_makes_the_run_incomplete(quiet_gateway: Stack):
    stack = quiet_gateway
    start = await rec.next_second()
    stack.faults(error_rate=1.0, error_status=503, methods=["GET"],
                 paths=["/v1/balance_transactions"])
    result = await rec.run(stack, start)
    stack.faults()
    assert result.run["verdict"] == "incomplete" and result.outcome is None
    assert "gateway could not be read" in result.run["error"]
    assert rec.breaks_of(stack.engine, result.run["id"]) == {}
