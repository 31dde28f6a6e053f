"""The gateway's list reads (reconciliation): every page through the SDK's auto-pagination,
newest first, a `created` window; the same contract against our sandbox and localstripe where
localstripe has the list (payment intents, refunds)."""

from __future__ import annotations

import time
import uuid

import httpx
import stripe

from tests.support.stripe_servers import API_KEY, Server


def _pay(server: Server, amount: int, tag: str) -> str:
    intent = server.gateway.create_payment_intent(
        amount=amount, currency="eur", payment_method="pm_card_visa",
        idempotency_key=f"lists-{tag}-{uuid.uuid4()}", metadata={"settlepay_deposit_id": tag})
    return intent.id


def test_payment_intents_and_refunds_list_every_page_newest_first(stripe_server: Server):
    tag = uuid.uuid4().hex[:8]
    made = [_pay(stripe_server, 1000 + n, f"{tag}-{n}") for n in range(3)]
    refund = stripe_server.gateway.create_refund(payment_intent=made[0],
                                                 idempotency_key=f"lists-refund-{tag}")
    listed = [pi for pi in stripe_server.gateway.list_payment_intents()
              if pi.metadata.get("settlepay_deposit_id", "").startswith(tag)]
    assert {pi.id for pi in listed} == set(made)
    assert all(pi.succeeded and pi.currency == "EUR" for pi in listed)
    assert refund.id in {r.id for r in stripe_server.gateway.list_refunds()}


def test_the_sandbox_pages_with_starting_after_and_has_more_like_stripe(sandbox: Server):
    tag = uuid.uuid4().hex[:8]
    made = {_pay(sandbox, 2000 + n, f"{tag}-{n}") for n in range(5)}
    client = stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.base_url},
                                 max_network_retries=0)
    first = client.v1.payment_intents.list({"limit": 2})
    assert first.has_more is True and len(first.data) == 2
    second = client.v1.payment_intents.list({"limit": 2, "starting_after": first.data[-1].id})
    assert not {pi.id for pi in first.data} & {pi.id for pi in second.data}
    walked = [pi.id for pi in client.v1.payment_intents.list({"limit": 2}).auto_paging_iter()]
    assert made <= set(walked) and len(walked) == len(set(walked))
    created = [pi.created for pi in client.v1.payment_intents.list({"limit": 100}).data]
    assert created == sorted(created, reverse=True)


def test_a_created_window_bounds_every_list(sandbox: Server):
    tag = uuid.uuid4().hex[:8]
    _pay(sandbox, 3000, tag)
    later = int(time.time()) + 1000
    assert list(sandbox.gateway.list_payment_intents(created_gte=later)) == []
    assert list(sandbox.gateway.iter_balance_transactions(created_gte=later)) == []
    assert any(pi.metadata.get("settlepay_deposit_id") == tag
               for pi in sandbox.gateway.list_payment_intents(created_lt=later))


def test_charges_carry_stripes_fee_in_their_balance_transaction(sandbox: Server):
    intent = sandbox.gateway.retrieve_payment_intent(_pay(sandbox, 10_000, uuid.uuid4().hex))
    txns = [t for t in sandbox.gateway.iter_balance_transactions()
            if t.source == intent.latest_charge]
    assert len(txns) == 1
    assert (txns[0].type, txns[0].amount, txns[0].fee, txns[0].net) == ("charge", 10_000, 320,
                                                                        9_680)
    assert txns[0].reporting_category == "charge"


def test_a_dispute_takes_the_amount_and_its_fee_and_is_listed(sandbox: Server):
    intent = sandbox.gateway.retrieve_payment_intent(_pay(sandbox, 5_000, uuid.uuid4().hex))
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/charges/{intent.latest_charge}/dispute",
                        json={"reason": "fraudulent"})
    assert answer.status_code == 200
    disputes = [d for d in sandbox.gateway.list_disputes() if d.charge == intent.latest_charge]
    assert len(disputes) == 1
    dispute = disputes[0]
    assert (dispute.amount, dispute.currency, dispute.payment_intent, dispute.status,
            dispute.fee) == (5_000, "EUR", intent.id, "needs_response", 1_500)
    txns = [t for t in sandbox.gateway.iter_balance_transactions() if t.source == dispute.id]
    assert [(t.type, t.amount, t.fee, t.reporting_category) for t in txns] == [
        ("adjustment", -5_000, 1_500, "dispute")]
    again = httpx.post(f"{sandbox.base_url}/_sandbox/charges/{intent.latest_charge}/dispute")
    assert again.status_code == 400


def test_payouts_list_with_a_status_filter(sandbox: Server):
    payout = sandbox.gateway.create_payout(amount=700, currency="eur",
                                           idempotency_key=f"lists-po-{uuid.uuid4()}",
                                           metadata={"withdrawal_id": "w-lists", "leg": "1"})
    assert payout.id in {p.id for p in sandbox.gateway.list_payouts()}
    client = stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.base_url},
                                 max_network_retries=0)
    statuses = {p.status for p in client.v1.payouts.list({"status": "failed", "limit": 100})}
    assert statuses <= {"failed"}


def test_the_sandbox_refuses_bad_list_parameters_like_stripe(sandbox: Server):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{sandbox.base_url}/v1/payment_intents"
    for params, param in (({"limit": "101"}, "limit"),
                          ({"starting_after": "pi_nope"}, "starting_after"),
                          ({"created[between]": "1"}, "created"),
                          ({"starting_after": "pi_a", "ending_before": "pi_b"},
                           "starting_after")):
        answer = httpx.get(url, params=params, headers=headers)
        assert answer.status_code in (400, 404), answer.text
        assert answer.json()["error"]["param"] == param


def test_the_sandbox_pages_backwards_with_ending_before(sandbox: Server):
    tag = uuid.uuid4().hex[:8]
    for n in range(3):
        _pay(sandbox, 4000 + n, f"{tag}-{n}")
    client = stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.base_url},
                                 max_network_retries=0)
    newest = client.v1.payment_intents.list({"limit": 3}).data
    before = client.v1.payment_intents.list({"limit": 1, "ending_before": newest[2].id}).data
    assert [pi.id for pi in before] == [newest[1].id]
