"""Deposits end to end: API -> workflow -> Stripe sandbox -> webhook -> ledger, all real."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus

from tests.support.deposits import (
    ledger_credits,
    payment_state,
    post_deposit,
    wait_for_status,
)
from tests.support.factories import cash, ledger_violations
from tests.support.stack import STRIPE_WEBHOOK_SECRET
from workflows.contracts.deposit import DepositRequest, DepositResult, workflow_id


async def test_happy_path(stack, worker, player, http):
    answer = await post_deposit(http, player, amount=2_500)
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["object"] == "deposit" and created["status"] == "pending"
    assert created["id"].startswith("dep_") and created["amount"] == 2_500
    assert answer.headers["location"] == f"/v1/deposits/{created['id']}"

    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded", done
    assert done["gateway"]["provider"] == "stripe"
    assert done["gateway"]["payment_intent"].startswith("pi_")
    assert done["gateway"]["charge"].startswith("ch_")
    assert done["succeeded_at"] and done["failed_at"] is None and done["ledger_transaction_id"]

    assert cash(stack.engine, player.id) == 2_500
    credits = ledger_credits(stack.engine, created["id"])
    assert [(c["idempotency_key"], c["kind"], c["result"]) for c in credits] == [
        (f"deposit-{created['id']}:credit", "deposit", "ok")]
    assert ledger_violations(stack.engine) == []

    with stack.engine.connect() as conn:
        events = conn.execute(text("SELECT event_type FROM outbox_events "
                                   "WHERE aggregate_id = :id ORDER BY id"),
                              {"id": created["id"]}).scalars().all()
        actions = conn.execute(text("SELECT record::jsonb ->> 'action' FROM audit_log "
                                    "WHERE record::jsonb ->> 'subject_id' = :id ORDER BY seq"),
                               {"id": created["id"]}).scalars().all()
    assert events == ["deposit.created", "deposit.succeeded"]
    assert actions == ["deposit.created", "deposit_limit.reserved", "deposit.succeeded"]

    # The card answered at once: the webhook repeats the create call's own answer, not signalled.
    for _ in range(100):
        with stack.engine.connect() as conn:
            outcome = conn.execute(text("SELECT outcome FROM stripe_events WHERE deposit_id = :id "
                                        "AND type = 'payment_intent.succeeded'"),
                                        {"id": created["id"]}).scalar()
        if outcome:
            break
        await asyncio.sleep(0.05)
    assert outcome in ("answered_in_request", "workflow_closed")

    handle = stack.client.get_workflow_handle(f"deposit-{created['id']}", result_type=DepositResult)
    result = await handle.result()
    assert result.status == "succeeded"
    assert result.ledger_transaction_id == done["ledger_transaction_id"]
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    attrs = {k.name: v for k, v in described.typed_search_attributes}
    assert attrs["PaymentState"] == "SUCCEEDED" and attrs["PlayerId"] == player.id
    assert attrs["Amount"] == 2_500 and attrs["Currency"] == "USD"


async def test_declined_card_fails_with_its_reason_and_no_ledger_effect(
        stack, worker, player, http):
    created = (await post_deposit(http, player, payment_method="pm_card_chargeDeclined")).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "failed"
    assert done["failure_code"] == "generic_decline"
    assert done["failure_reason"] == "Your card was declined."
    assert done["gateway"]["payment_intent"].startswith("pi_")
    assert cash(stack.engine, player.id) == 0 and ledger_credits(stack.engine, created["id"]) == []
    assert await payment_state(stack, created["id"], "FAILED") == "FAILED"
    with stack.engine.connect() as conn:
        events = conn.execute(text("SELECT event_type, payload FROM outbox_events "
                                   "WHERE aggregate_id = :id ORDER BY id"),
                              {"id": created["id"]}).all()
    assert [e for e, _ in events] == ["deposit.created", "deposit.failed"]
    assert events[-1][1]["failure_code"] == "generic_decline"


async def test_gate_refusal_fails_without_touching_the_gateway(stack, worker, player, http):
    created = (await post_deposit(http, player, amount=100)).json()   # below the 500 minimum
    done = await wait_for_status(http, player, created["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "amount_below_minimum")
    assert done["gateway"]["payment_intent"] is None
    assert stack.payment_intents(created["id"]) == []
    assert cash(stack.engine, player.id) == 0


async def test_three_d_secure_requires_action_then_succeeds(stack, worker, player, http):
    created = (await post_deposit(http, player, amount=4_000,
                                  payment_method="pm_card_authenticationRequired")).json()
    waiting = await wait_for_status(http, player, created["id"],
                                    ("requires_action", "failed", "succeeded"))
    assert waiting["status"] == "requires_action"
    action = waiting["next_action"]
    assert action["type"] == "redirect_to_url" and "/_sandbox/3ds/" in action["redirect_url"]
    assert action["return_url"] == stack.settings.deposit_return_url
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox_events WHERE aggregate_id = :id "
                                 "AND event_type = 'deposit.requires_action'"),
                                 {"id": created["id"]}).scalar() == 1
    assert await payment_state(stack, created["id"], "REQUIRES_ACTION") == "REQUIRES_ACTION"

    # The player authenticates on the bank's page; the webhook tells the workflow.
    pi = waiting["gateway"]["payment_intent"]
    import httpx
    httpx.post(f"{stack.stripe_url}/_sandbox/payment_intents/{pi}/authenticate",
               json={"outcome": "succeed"}).raise_for_status()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded" and done["next_action"] is None
    assert cash(stack.engine, player.id) == 4_000


async def test_three_d_secure_failure(stack, worker, player, http):
    created = (await post_deposit(http, player,
                                  payment_method="pm_card_authenticationRequired")).json()
    waiting = await wait_for_status(http, player, created["id"], ("requires_action",))
    import httpx
    httpx.post(f"{stack.stripe_url}/_sandbox/payment_intents/{waiting['gateway']['payment_intent']}/authenticate",
               json={"outcome": "fail"}).raise_for_status()
    done = await wait_for_status(http, player, created["id"])
    assert (done["status"], done["failure_code"]) == ("failed",
                                                      "payment_intent_authentication_failure")
    assert cash(stack.engine, player.id) == 0


async def test_gateway_5xx_then_success(stack, worker, player, http):
    stack.faults(fail_next=3, error_status=503, paths=["/v1/payment_intents"])
    created = (await post_deposit(http, player, amount=1_000)).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded"
    assert len(stack.payment_intents(created["id"])) == 1
    assert cash(stack.engine, player.id) == 1_000


async def test_answer_lost_after_the_gateway_charged_does_not_charge_twice(
        stack, worker, player, http):
    stack.faults(fail_next=1, error_phase="after", paths=["/v1/payment_intents"])
    created = (await post_deposit(http, player, amount=1_100)).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded"
    assert len(stack.payment_intents(created["id"])) == 1
    assert cash(stack.engine, player.id) == 1_100


async def test_webhooks_are_verified_and_recorded_once(stack, worker, player, http):
    stack.faults(async_settle_ms=300)
    created = (await post_deposit(http, player)).json()
    await wait_for_status(http, player, created["id"])
    with stack.engine.connect() as conn:
        rows = conn.execute(text("SELECT type, outcome FROM stripe_events WHERE deposit_id = :id"),
                            {"id": created["id"]}).all()
    outcomes = dict(rows)
    assert outcomes["payment_intent.succeeded"] in ("signalled", "workflow_closed")
    assert outcomes["payment_intent.created"] == "ignored_type"

    # A correctly signed event about an object we do not know: acknowledged and recorded.
    from sandboxes.stripe.signing import signature_header
    unknown = json.dumps({
        "id": f"evt_unknown_{created['id']}", "object": "event",
        "type": "payment_intent.succeeded", "created": 1,
        "data": {"object": {"id": "pi_not_ours", "object": "payment_intent",
                            "status": "succeeded", "metadata": {}}}})
    signed = {"Stripe-Signature": signature_header(unknown, STRIPE_WEBHOOK_SECRET)}
    for attempt in range(2):   # the second delivery is a duplicate: acknowledged, not processed
        answer = await http.post("/v1/webhooks/stripe", content=unknown, headers=signed)
        assert answer.status_code == 200
        assert answer.json() == {"received": True, "duplicate": attempt == 1,
                                 "outcome": "unknown_object"}
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT outcome FROM stripe_events WHERE id = :id"),
                            {"id": f"evt_unknown_{created['id']}"}).scalar() == "unknown_object"

    import time as _time
    old = signature_header(unknown, STRIPE_WEBHOOK_SECRET, timestamp=int(_time.time()) - 301)
    too_old = await http.post("/v1/webhooks/stripe", content=unknown,
                              headers={"Stripe-Signature": old})
    assert too_old.status_code == 400 and too_old.json()["code"] == "webhook_signature_invalid"

    forged = json.dumps({"id": "evt_forged", "object": "event"})
    bad = await http.post("/v1/webhooks/stripe", content=forged,
                          headers={"Stripe-Signature": "t=1,v1=deadbeef"})
    assert bad.status_code == 400 and bad.json()["code"] == "webhook_signature_invalid"
    missing = await http.post("/v1/webhooks/stripe", content=b"{}")
    assert missing.status_code == 400
    with stack.engine.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM stripe_events WHERE id = 'evt_forged'")).scalar() == 0


async def test_workflow_started_without_search_attributes_sets_them(stack, worker, player):
    """Started by hand (not by the API): the workflow upserts PlayerId, Amount, Currency itself."""
    from settlepay import task_queues
    from store import deposits as store

    deposit_id = store.deposit_id_for(f"manual-{player.id}")
    with stack.engine.begin() as conn:
        store.insert(conn, deposit_id=deposit_id, player_id=player.id, partner_id=player.partner_id,
                     amount=300, currency="USD", payment_method="pm_card_visa",
                     created_by="operator:test")
    handle = await stack.client.start_workflow(
        "Deposit", DepositRequest(deposit_id, player.id, player.partner_id, 300, "USD",
                                  "pm_card_visa",
                                  "operator:test"),
        id=workflow_id(deposit_id), task_queue=task_queues.MAIN, result_type=DepositResult)
    result = await handle.result()
    assert (result.status, result.failure_code) == ("failed", "amount_below_minimum")
    attrs = {k.name: v for k, v in (await handle.describe()).typed_search_attributes}
    assert {k: attrs.get(k) for k in ("PlayerId", "Amount", "Currency", "PaymentState")} == {
        "PlayerId": player.id, "Amount": 300, "Currency": "USD", "PaymentState": "FAILED"}
