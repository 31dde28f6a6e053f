"""The gateway side of the closed loop going wrong: a refund that fails after acceptance, a
payout failing after a refund went through (post what was paid, return the rest), and 5xx
answers retried with the same idempotency key (one payout, not two)."""

from __future__ import annotations

import uuid

import httpx

import ledger
from ledger import AccountRef, Leg, Transfer
from store import deposits as deposit_store
from tests.support.factories import balance, card_deposit, events, fund, ledger_violations
from tests.support.withdrawals import add_destination, confirm, ready_player, start


async def test_refund_paid_then_payout_failed_posts_only_what_was_paid(stack, worker, http):
    player = ready_player(stack, cash=0)
    card_deposit(stack, player, 3_000)
    fund(stack.engine, player, 2_000, tag="winnings")
    await add_destination(http, player, "ba_fail_account")
    withdrawal_id = (await start(http, player, 4_000, payout_destination="ba_fail_account"))["id"]
    done = await confirm(stack, http, player, withdrawal_id)
    assert (done["state"], done["reason_code"], done["paid_amount"]) == (
        "failed", "payout_failed", 3_000)
    assert [(p["method"], p["state"]) for p in done["payouts"]] == [
        ("refund", "confirmed"), ("payout", "failed")]
    # 3,000 went back to the card; the 1,000 the payout could not deliver is the player's again.
    assert balance(stack.engine, player) == {"cash": 2_000, "held": 0, "available": 2_000,
                                      "pending_withdrawal": 0, "pending_withdrawal_incoming": 0}
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.failed"]
    assert ledger_violations(stack.engine) == []


async def test_refund_failing_after_acceptance_voids_the_hold(stack, worker, http):
    player = ready_player(stack, cash=0)
    gateway = stack.providers().gateway
    # A card whose refunds go pending and then fail (Stripe's 4000000000005126).
    deposit_id = f"dep_test_{uuid.uuid4().hex[:16]}"
    intent = gateway.create_payment_intent(amount=2_000, currency="USD",
                                           payment_method="pm_card_refundFail",
                                           idempotency_key=f"{deposit_id}:create")
    with stack.engine.begin() as conn:
        deposit_store.insert(conn, deposit_id=deposit_id, player_id=player.id,
                             partner_id=player.partner_id,
                             amount=2_000, currency="USD", payment_method="pm_card_refundFail",
                             created_by="system:test")
        credit = ledger.post(conn, Transfer(
            key=f"deposit-{deposit_id}:credit", kind="deposit", reference=deposit_id,
            legs=(Leg(AccountRef.gateway_clearing("stripe", "USD"), -2_000),
                  Leg(AccountRef.player_cash(player.id, "USD"), 2_000))))
        deposit_store.mark_succeeded(conn, deposit_id, payment_intent=intent.id,
                                     charge=intent.latest_charge,
                                     ledger_transaction_id=credit.transaction_id)
    withdrawal_id = (await start(http, player, 1_500))["id"]
    done = await confirm(stack, http, player, withdrawal_id)
    assert (done["state"], done["paid_amount"]) == ("failed", 0)
    assert done["payouts"][0]["method"] == "refund" and done["payouts"][0]["state"] == "failed"
    assert balance(stack.engine, player)["available"] == 2_000
    assert ledger_violations(stack.engine) == []


async def test_gateway_5xx_is_retried_with_the_same_key_and_pays_once(stack, worker, http):
    player = ready_player(stack, cash=0)
    fund(stack.engine, player, 1_000)
    payouts_before = httpx.get(f"{stack.stripe_url}/_sandbox/stats").json()["payouts"]
    httpx.post(f"{stack.stripe_url}/_sandbox/faults",
               json={"fail_next": 2, "error_status": 500, "paths": ["/v1/payouts"],
                     "methods": ["POST"]}
               ).raise_for_status()
    try:
        withdrawal_id = (await start(http, player, 800))["id"]
        done = await confirm(stack, http, player, withdrawal_id)
    finally:
        httpx.delete(f"{stack.stripe_url}/_sandbox/faults").raise_for_status()
    assert done["state"] == "paid"
    # Two 500s, then success: one payout at the gateway, not three.
    assert httpx.get(f"{stack.stripe_url}/_sandbox/stats").json()["payouts"] == payouts_before + 1
    assert done["payouts"][0]["gateway_ref"].startswith("po_")
    assert balance(stack.engine, player)["cash"] == 200
    assert ledger_violations(stack.engine) == []
