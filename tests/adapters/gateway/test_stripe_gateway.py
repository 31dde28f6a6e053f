"""The PaymentGateway contract for payment intents and refunds, against BOTH our Stripe sandbox
and localstripe (an emulator nobody here wrote), through the real Stripe adapter over HTTP."""

from __future__ import annotations

import uuid

import pytest

from adapters.gateway import GatewayDeclined, GatewayInvalidRequest


def key(step: str) -> str:
    return f"contract-{uuid.uuid4().hex}:{step}"


def test_create_and_confirm_in_one_call_succeeds(stripe_server):
    gw = stripe_server.gateway
    intent = gw.create_payment_intent(amount=2500, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("create"),
                                      metadata={"deposit_id": "dep_1"})
    assert intent.id.startswith("pi_")
    assert intent.status == "succeeded" and intent.succeeded and not intent.failed
    assert intent.amount == 2500 and isinstance(intent.amount, int)
    assert intent.currency == "USD"
    assert intent.latest_charge and intent.latest_charge.startswith("ch_")
    assert intent.metadata == {"deposit_id": "dep_1"}

    again = gw.retrieve_payment_intent(intent.id)
    assert (again.id, again.status, again.amount, again.latest_charge) == (
        intent.id, "succeeded", 2500, intent.latest_charge)


def test_create_then_confirm(stripe_server):
    gw = stripe_server.gateway
    intent = gw.create_payment_intent(amount=1200, currency="EUR", payment_method="pm_card_visa",
                                      idempotency_key=key("create"), confirm=False)
    assert intent.status == "requires_confirmation"
    confirmed = gw.confirm_payment_intent(intent.id, idempotency_key=key("confirm"))
    assert confirmed.id == intent.id and confirmed.status == "succeeded"
    assert confirmed.currency == "EUR"


def test_declined_card_is_a_business_failure(stripe_server):
    with pytest.raises(GatewayDeclined) as caught:
        stripe_server.gateway.create_payment_intent(
            amount=1000, currency="USD", payment_method=stripe_server.declined_card,
            idempotency_key=key("create"))
    assert caught.value.code == "card_declined"
    assert caught.value.http_status == 402
    assert caught.value.reason  # decline code where the server gives one, else the error code


def test_cancel_an_unconfirmed_intent(stripe_server):
    gw = stripe_server.gateway
    intent = gw.create_payment_intent(amount=900, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("create"), confirm=False)
    canceled = gw.cancel_payment_intent(intent.id, idempotency_key=key("cancel"))
    assert canceled.status == "canceled"
    assert gw.retrieve_payment_intent(intent.id).status == "canceled"
    with pytest.raises(GatewayInvalidRequest):  # a canceled intent cannot be canceled again
        gw.cancel_payment_intent(intent.id, idempotency_key=key("cancel-again"))


def test_unknown_intent_is_an_invalid_request(stripe_server):
    with pytest.raises(GatewayInvalidRequest) as caught:
        stripe_server.gateway.retrieve_payment_intent("pi_doesnotexist000000000000")
    assert caught.value.http_status == 404


def test_partial_then_full_refund(stripe_server):
    gw = stripe_server.gateway
    intent = gw.create_payment_intent(amount=5000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("create"))
    first = gw.create_refund(payment_intent=intent.id, amount=1500, idempotency_key=key("refund-1"))
    assert first.id.startswith("re_") and first.status == "succeeded"
    assert (first.amount, first.currency, first.payment_intent) == (1500, "USD", intent.id)
    assert first.charge == intent.latest_charge
    rest = gw.create_refund(payment_intent=intent.id, amount=3500, idempotency_key=key("refund-2"))
    assert (rest.amount, rest.status, rest.charge) == (3500, "succeeded", intent.latest_charge)
    fetched = gw.retrieve_refund(first.id)
    assert (fetched.id, fetched.amount, fetched.status) == (first.id, 1500, "succeeded")


# --- where localstripe is too lenient to hold the contract: our sandbox only ----------------

def test_refunds_beyond_the_charge_or_of_a_failed_payment_are_refused(sandbox):
    gw = sandbox.gateway
    intent = gw.create_payment_intent(amount=5000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("create"))
    with pytest.raises(GatewayInvalidRequest) as too_much:
        gw.create_refund(payment_intent=intent.id, amount=5001, idempotency_key=key("refund"))
    assert too_much.value.code == "amount_too_large" and too_much.value.param == "amount"
    assert gw.create_refund(payment_intent=intent.id, idempotency_key=key("all")).amount == 5000
    with pytest.raises(GatewayInvalidRequest) as twice:
        gw.create_refund(payment_intent=intent.id, amount=1, idempotency_key=key("more"))
    assert twice.value.code == "charge_already_refunded"

    with pytest.raises(GatewayDeclined) as caught:
        gw.create_payment_intent(amount=1000, currency="USD", payment_method=sandbox.declined_card,
                                 idempotency_key=key("create"))
    declined = caught.value.payment_intent
    assert declined is not None and declined.failed and declined.status == "requires_payment_method"
    with pytest.raises(GatewayInvalidRequest) as refused:
        gw.create_refund(payment_intent=declined.id, idempotency_key=key("refund"))
    assert refused.value.code == "charge_not_refundable"
