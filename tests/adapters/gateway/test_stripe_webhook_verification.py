"""StripeGateway.verify_webhook reads the event as stripe.Webhook.construct_event would (the
library's signature check, then the JSON): the same event for every body, and the same refusals
(bad signature, old signature, no header, not JSON, a thin v2 event)."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from adapters.gateway import WebhookSignatureInvalid
from adapters.gateway.stripe_gateway import StripeGateway
from sandboxes.stripe.signing import signature_header

SECRET = "whsec_verify_webhook_equivalence"

EVENTS = [
    {"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "created": 1765000000,
     "livemode": False, "pending_webhooks": 1,
     "request": {"id": "req_1", "idempotency_key": "deposit-abc:create"},
     "data": {"object": {
         "id": "pi_1", "object": "payment_intent", "amount": 2500, "currency": "usd",
         "status": "succeeded", "latest_charge": "ch_1", "metadata": {"settlepay_deposit_id": "d1"},
         "last_payment_error": None, "next_action": None,
         "payment_method_types": ["card"],
         "charges": {"object": "list", "data": [{"id": "ch_1", "object": "charge",
                                                  "amount": 2500, "refunds": []}]}}}},
    {"id": "evt_2", "object": "event", "type": "payment_intent.payment_failed", "created": 0,
     "request": None,
     "data": {"object": {"id": "pi_2", "object": "payment_intent",
                         "status": "requires_payment_method",
                         "last_payment_error": {"code": "card_declined",
                                                "decline_code": "insufficient_funds",
                                                "message": "Your card has insufficient funds."},
                         "metadata": {}}}},
    {"id": "evt_3", "object": "event", "type": "payout.paid",
     "data": {"object": {"id": "po_1", "object": "payout", "amount": 10, "metadata": {"a": "b"}}}},
    {"id": "evt_4", "object": "event", "type": "refund.failed",
     "request": {"id": None, "idempotency_key": None}, "data": {}},
]


def gateway() -> StripeGateway:
    return StripeGateway(api_key="sk_test_x", api_base="http://127.0.0.1:9",
                         webhook_secret=SECRET, timeout_seconds=1)


def signed(body: bytes, timestamp: int | None = None) -> str:
    return signature_header(body.decode(), SECRET, timestamp=timestamp or int(time.time()))


@pytest.mark.parametrize("document", EVENTS, ids=[e["id"] for e in EVENTS])
def test_the_event_is_the_one_construct_event_builds(document):
    body = json.dumps(document).encode()
    header = signed(body)
    event = gateway().verify_webhook(body, header)
    expected = stripe.Webhook.construct_event(body, header, SECRET, tolerance=300).to_dict()
    request = expected.get("request")
    assert (event.id, event.type, event.created) == (expected["id"], expected["type"],
                                                     int(expected.get("created") or 0))
    assert event.object == dict((expected.get("data") or {}).get("object") or {})
    assert event.request_idempotency_key == (
        (request or {}).get("idempotency_key") if isinstance(request, dict) else None)


def test_the_refusals_are_construct_events():
    gw = gateway()
    body = json.dumps(EVENTS[0]).encode()
    with pytest.raises(WebhookSignatureInvalid, match="No signatures found matching"):
        gw.verify_webhook(body.replace(b"evt_", b"evt_X"), signed(body))
    with pytest.raises(WebhookSignatureInvalid, match="Timestamp outside the tolerance zone"):
        gw.verify_webhook(body, signed(body, int(time.time()) - 301))
    with pytest.raises(WebhookSignatureInvalid, match="No Stripe-Signature header"):
        gw.verify_webhook(body, None)
    not_json = b"{not json"
    with pytest.raises(WebhookSignatureInvalid, match="^malformed event: ") as raised:
        gw.verify_webhook(not_json, signed(not_json))
    with pytest.raises(ValueError) as library:
        stripe.Webhook.construct_event(not_json, signed(not_json), SECRET)
    assert str(raised.value) == f"malformed event: {library.value}"
    thin = json.dumps({"id": "evt_t", "object": "v2.core.event", "type": "x"}).encode()
    with pytest.raises(WebhookSignatureInvalid) as raised:
        gw.verify_webhook(thin, signed(thin))
    with pytest.raises(ValueError) as library:
        stripe.Webhook.construct_event(thin, signed(thin), SECRET)
    assert str(raised.value) == f"malformed event: {library.value}"
