"""Deposits whose verdict is late or never comes, end to end (issue 9, items 5 and 12): the
Stripe sandbox refuses to cancel a processing payment, as Stripe does; a deposit fails only when
the gateway confirms the payment cancelled or failed; a success for a closed deposit is credited
through the deposit's own command and ledger key; a gateway step that keeps failing ends in
operator review instead of being retried for ever under one key."""

from __future__ import annotations

import asyncio
import uuid

import audit
from commands import deposits as commands
from tests.support.deposits import (
    deposit_row,
    ledger_credits,
    post_deposit,
    start_deposit,
    stripe_events,
    wait_for_status,
)
from tests.support.factories import (
    Player,
    audit_actions,
    cash,
    events,
    ledger_violations,
    wait_until,
)
from tests.support.stack import Stack
from workflows.contracts.deposit import (
    DepositRequest,
    DepositResult,
    DepositStatus,
    Failure,
    Payment,
    workflow_id,
)


def assert_credited_once(stack: Stack, player: Player, deposit_id: str, amount: int) -> None:
    assert cash(stack.engine, player.id) == amount
    assert [(c["idempotency_key"], c["result"]) for c in ledger_credits(stack.engine, deposit_id)] \
        == [(f"deposit-{deposit_id}:credit", "ok")]
    assert len(stack.payment_intents(deposit_id)) == 1


def assert_books_clean(stack: Stack) -> None:
    assert ledger_violations(stack.engine) == []
    with stack.engine.connect() as conn:
        assert audit.verify(conn).problems == []


def cancels(stack: Stack, payment_intent: str) -> list[int]:
    """The statuses the gateway answered to our cancel requests for this payment."""
    return [r["status"] for r in stack.gateway_requests(f"/v1/payment_intents/{payment_intent}")
            if r["path"].endswith("/cancel")]


async def test_a_deposit_still_processing_at_the_timeout_is_credited_when_its_payment_succeeds(
        stack, worker, player, http):
    # The payment settles 10 s after confirmation; the deposit's timeout is 8 s. Stripe refuses
    # the cancel: the deposit must not fail `expired` while the player is being charged.
    stack.faults(async_settle_ms=10_000)
    created = (await post_deposit(http, player, amount=2_100)).json()
    done = await wait_for_status(http, player, created["id"], timeout=30)
    assert (done["status"], done["failure_code"]) == ("succeeded", None), done
    pi = done["gateway"]["payment_intent"]
    assert cancels(stack, pi) == [400]                        # the timeout came, the cancel failed
    assert stack.payment_intents(created["id"])[0]["status"] == "succeeded"
    assert events(stack.engine, created["id"]) == ["deposit.created", "deposit.succeeded"]
    assert_credited_once(stack, player, created["id"], 2_100)
    assert_books_clean(stack)


async def test_a_success_for_a_deposit_that_failed_while_processing_is_credited_not_dropped(
        stack, player):
    """What the deposit workflow before the fix left behind: the deposit failed `expired` at the
    timeout while Stripe still processed the payment. Stripe's later `payment_intent.succeeded`
    used to be acknowledged and dropped (`workflow_closed`): the player was charged and never
    credited."""
    stack.faults(async_settle_ms=1_500)
    deposit_id = f"dep_{uuid.uuid4().hex[:24]}"
    with stack.engine.begin() as conn:
        commands.create(conn, deposit_id=deposit_id,
                        player={"id": player.id, "partner_id": player.partner_id}, amount=2_200,
                        currency="USD", payment_method="pm_card_visa", actor="api_key:tests")
    intent = stack.gateway().create_payment_intent(
        amount=2_200, currency="USD", payment_method="pm_card_visa",
        idempotency_key=f"{workflow_id(deposit_id)}:create",
        metadata={"settlepay_deposit_id": deposit_id, "player_id": player.id})
    assert intent.status == "processing"
    request = DepositRequest(deposit_id, player.id, player.partner_id, 2_200, "USD",
                             "pm_card_visa", "api_key:tests")
    with stack.engine.begin() as conn:
        commands.record_payment(conn, request, Payment(intent.id, "processing"))
        commands.fail(conn, Failure(deposit_id, "expired", "the payment did not complete in time",
                                    intent.id))
    try:
        await wait_until(lambda: deposit_row(stack.engine, deposit_id)["status"] == "succeeded")
    finally:
        stack.faults()
    assert stripe_events(stack.engine, deposit_id)["payment_intent.succeeded"] == [
        "credited_after_close"]
    row = deposit_row(stack.engine, deposit_id)
    assert (row["failure_code"], row["failed_at"]) == (None, None)
    assert row["gateway_charge"].startswith("ch_")
    assert audit_actions(stack.engine, deposit_id)[-2:] == ["deposit.failed", "deposit.succeeded"]
    assert_credited_once(stack, player, deposit_id, 2_200)
    assert_books_clean(stack)


async def test_a_payment_outlasting_the_processing_limit_goes_to_review_then_is_credited(
        stack, worker, player):
    # Timeout 1 s, processing limit 3 s, the payment settles after 7 s: the deposit goes to an
    # operator, and the success that comes after its workflow closed is still credited.
    stack.faults(async_settle_ms=7_000)
    deposit_id = await start_deposit(stack, player, 2_300, webhook_wait_seconds=0.5,
                                     poll_interval_seconds=0.5, timeout_seconds=1.0,
                                     processing_limit_seconds=3.0)
    handle = stack.client.get_workflow_handle(workflow_id(deposit_id), result_type=DepositResult)
    result = await asyncio.wait_for(handle.result(), 30)
    assert (result.status, result.review_code) == (DepositStatus.REVIEW, "still_processing")
    row = deposit_row(stack.engine, deposit_id)
    assert (row["status"], row["review_code"]) == ("review", "still_processing")
    assert cash(stack.engine, player.id) == 0

    await wait_until(lambda: deposit_row(stack.engine, deposit_id)["status"] == "succeeded")
    assert stripe_events(stack.engine, deposit_id)["payment_intent.succeeded"] == [
        "credited_after_close"]
    assert events(stack.engine, deposit_id) == [
        "deposit.created", "deposit.review", "deposit.succeeded"]
    assert_credited_once(stack, player, deposit_id, 2_300)
    assert_books_clean(stack)


async def test_a_gateway_failing_past_the_create_deadline_sends_the_deposit_to_review(
        stack, worker, player, http):
    # Every create answers 500 (before doing anything): after the 2 s deadline the workflow
    # stops retrying the key `deposit-<id>:create` and an operator takes over.
    stack.faults(error_rate=1.0, paths=["/v1/payment_intents"], methods=["POST"])
    deposit_id = await start_deposit(stack, player, 2_400, gateway_deadline_seconds=2.0)
    handle = stack.client.get_workflow_handle(workflow_id(deposit_id), result_type=DepositResult)
    result = await asyncio.wait_for(handle.result(), 30)
    stack.faults()
    assert (result.status, result.review_code) == (DepositStatus.REVIEW, "gateway_unreachable")
    row = deposit_row(stack.engine, deposit_id)
    assert (row["status"], row["review_code"], row["gateway_payment_intent"]) == (
        "review", "gateway_unreachable", None)
    attempts = [r for r in stack.gateway_requests("/v1/payment_intents")
                if r["idempotency_key"] == f"deposit-{deposit_id}:create"]
    assert 2 <= len(attempts) <= 10 and {r["status"] for r in attempts} == {500}
    assert stack.payment_intents(deposit_id) == [] and cash(stack.engine, player.id) == 0
    assert events(stack.engine, deposit_id) == ["deposit.created", "deposit.review"]
    assert_books_clean(stack)

    # No payment reached the gateway: an operator closes the deposit (a partner key may not).
    path, decision = f"/v1/deposits/{deposit_id}/review", {"decision": "fail",
                                                           "reason": "no payment at Stripe"}
    partner = await http.post(path, json=decision, headers=player.headers)
    assert partner.status_code == 403 and partner.json()["code"] == "insufficient_scope"
    bad = await http.post(path, json={"decision": "credit", "reason": "x"},
                          headers=player.operator)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    assert deposit_row(stack.engine, deposit_id)["status"] == "review"
    closed = await http.post(path, json=decision, headers=player.operator)
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["status"], body["failure_code"], body["failure_reason"]) == (
        "failed", "closed_in_review", "no payment at Stripe")
    assert (await http.get(f"/v1/deposits/{deposit_id}", headers=player.headers)).json()[
        "status"] == "failed"
    again = await http.post(path, json=decision, headers=player.operator)
    assert again.status_code == 409 and again.json()["code"] == "deposit_not_in_review"
    assert events(stack.engine, deposit_id) == ["deposit.created", "deposit.review",
                                                "deposit.failed"]
    assert audit_actions(stack.engine, deposit_id)[-1] == "deposit.failed"
    assert cash(stack.engine, player.id) == 0
    assert_books_clean(stack)
