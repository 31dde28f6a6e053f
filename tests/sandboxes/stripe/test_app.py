"""What our Stripe sandbox adds beyond the shared contract: Stripe's idempotency, 3-D Secure,
fault injection, signed webhooks (verified by the Stripe SDK), payouts and balance transactions.
All through the real Stripe adapter over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.gateway import (
    GatewayDeclined,
    GatewayInvalidRequest,
    GatewayUnavailable,
    WebhookSignatureInvalid,
)
from adapters.gateway.stripe_gateway import StripeGateway
from sandboxes.stripe import create_app
from sandboxes.stripe.signing import signature_header
from tests.support.servers import serve_asgi
from tests.support.stripe_servers import API_KEY, WEBHOOK_SECRET

T = TypeVar("T")


def key(step: str) -> str:
    return f"sandbox-{uuid.uuid4().hex}:{step}"


def eventually(check: Callable[[], T], timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- idempotency, like Stripe ---------------------------------------------------------------

def test_same_key_same_request_replays_the_first_answer(sandbox):
    gw, k = sandbox.gateway, key("create")
    before = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()
    first = gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                                     idempotency_key=k)
    second = gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=k)
    assert second == first
    after = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()
    assert after["payment_intents"] - before["payment_intents"] == 1
    assert after["charges"] - before["charges"] == 1
    assert after["idempotent_replays"] - before["idempotent_replays"] == 1


def test_same_key_different_request_is_refused(sandbox):
    gw, k = sandbox.gateway, key("create")
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=k)
    with pytest.raises(GatewayInvalidRequest) as caught:
        gw.create_payment_intent(amount=1001, currency="USD", payment_method="pm_card_visa",
                                 idempotency_key=k)
    assert caught.value.code == "idempotency_error"


def test_a_decline_is_replayed_as_a_decline(sandbox):
    gw, k = sandbox.gateway, key("create")
    answers = []
    for _ in range(2):
        with pytest.raises(GatewayDeclined) as caught:
            gw.create_payment_intent(amount=1000, currency="USD",
                                     payment_method="pm_card_chargeDeclined",
                                     idempotency_key=k)
        answers.append((caught.value.code, caught.value.decline_code,
                        caught.value.payment_intent.id))
    assert answers[0] == answers[1] and answers[0][:2] == ("card_declined", "generic_decline")


def test_insufficient_funds_card_names_its_decline_code(sandbox):
    with pytest.raises(GatewayDeclined) as caught:
        sandbox.gateway.create_payment_intent(amount=1000, currency="USD", idempotency_key=key("c"),
                                              payment_method="pm_card_chargeDeclinedInsufficientFunds")
    assert caught.value.reason == "insufficient_funds"


def test_invalid_parameters_are_invalid_requests(sandbox):
    with pytest.raises(GatewayInvalidRequest) as small:
        sandbox.gateway.create_payment_intent(amount=10, currency="USD",
                                              payment_method="pm_card_visa",
                                              idempotency_key=key("c"))
    assert small.value.code == "amount_too_small"
    with pytest.raises(GatewayInvalidRequest) as pm:
        sandbox.gateway.create_payment_intent(amount=1000, currency="USD", payment_method="pm_nope",
                                              idempotency_key=key("c"))
    assert pm.value.code == "resource_missing" and pm.value.param == "payment_method"
    with pytest.raises(TypeError):
        sandbox.gateway.create_payment_intent(amount=10.5, currency="USD",
                                              payment_method="pm_card_visa",
                                              idempotency_key=key("c"))


def test_a_wrong_api_key_is_refused():
    with serve_asgi(create_app(api_key="sk_test_right")) as url:
        gw = StripeGateway(api_key="sk_test_wrong", api_base=url, timeout_seconds=2)
        with pytest.raises(GatewayInvalidRequest) as caught:
            gw.retrieve_payment_intent("pi_x")
        assert caught.value.http_status == 401


# --- 3-D Secure ------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_three_d_secure(sandbox, outcome):
    gw = sandbox.gateway
    intent = gw.create_payment_intent(amount=3000, currency="USD", idempotency_key=key("create"),
                                      payment_method="pm_card_authenticationRequired",
                                      return_url="https://partner.example/back")
    assert intent.status == "requires_action"
    assert intent.next_action.type == "redirect_to_url"
    assert intent.next_action.return_url == "https://partner.example/back"
    page = httpx.get(intent.next_action.redirect_url)
    assert page.status_code == 200 and "3-D Secure" in page.text
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/payment_intents/{intent.id}/authenticate",
                        json={"outcome": outcome})
    assert answer.status_code == 200
    after = gw.retrieve_payment_intent(intent.id)
    if outcome == "succeed":
        assert after.succeeded and after.latest_charge
    else:
        assert after.failed
        assert after.last_payment_error.code == "payment_intent_authentication_failure"


# --- faults ----------------------------------------------------------------------------------

def test_injected_5xx_is_retryable_and_the_key_then_succeeds(sandbox):
    httpx.post(f"{sandbox.base_url}/_sandbox/faults", json={"fail_next": 2, "error_status": 503})
    k = key("create")
    for _ in range(2):
        with pytest.raises(GatewayUnavailable) as caught:
            sandbox.gateway.create_payment_intent(amount=1000, currency="USD",
                                                  payment_method="pm_card_visa",
                                                  idempotency_key=k)
        assert caught.value.http_status == 503
    assert sandbox.gateway.create_payment_intent(amount=1000, currency="USD",
                                                 payment_method="pm_card_visa",
                                                 idempotency_key=k).succeeded


def test_an_answer_lost_after_processing_is_recovered_by_the_same_key(sandbox):
    """The ambiguous failure: Stripe did the work, we saw a 500. The retry must not pay twice."""
    httpx.post(f"{sandbox.base_url}/_sandbox/faults", json={"fail_next": 1, "error_phase": "after"})
    k = key("create")
    before = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()["payment_intents"]
    with pytest.raises(GatewayUnavailable):
        sandbox.gateway.create_payment_intent(amount=1000, currency="USD",
                                              payment_method="pm_card_visa",
                                              idempotency_key=k)
    intent = sandbox.gateway.create_payment_intent(amount=1000, currency="USD",
                                                   payment_method="pm_card_visa", idempotency_key=k)
    assert intent.succeeded
    assert httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()["payment_intents"] == before + 1


def test_latency_beyond_the_client_timeout_is_retryable(sandbox):
    httpx.post(f"{sandbox.base_url}/_sandbox/faults", json={"latency_ms": 5000})
    started = time.monotonic()
    with pytest.raises(GatewayUnavailable):
        sandbox.gateway.retrieve_payment_intent("pi_whatever")
    assert time.monotonic() - started < 4.0  # the adapter's 2 s timeout, not the sandbox's delay


def test_error_rate_and_path_filter(sandbox):
    httpx.post(f"{sandbox.base_url}/_sandbox/faults",
               json={"error_rate": 1.0, "paths": ["/v1/refunds"], "error_status": 429})
    intent = sandbox.gateway.create_payment_intent(amount=1000, currency="USD",
                                                   payment_method="pm_card_visa",
                                                   idempotency_key=key("c"))
    with pytest.raises(GatewayUnavailable) as caught:
        sandbox.gateway.create_refund(payment_intent=intent.id, idempotency_key=key("r"))
    assert caught.value.http_status == 429


def test_unknown_fault_setting_is_refused(sandbox):
    assert httpx.post(f"{sandbox.base_url}/_sandbox/faults",
                      json={"nonsense": 1}).status_code == 400


# --- webhooks --------------------------------------------------------------------------------

class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            self.requests.append((dict(request.headers), await request.body()))
            if self.fail_first > 0:
                self.fail_first -= 1
                return JSONResponse({"error": "down"}, status_code=500)
            return JSONResponse({"ok": True})
        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def hooked() -> Iterator[tuple[Receiver, str, StripeGateway]]:
    receiver = Receiver()
    with serve_asgi(receiver.app()) as hook_url, \
            serve_asgi(create_app(webhook_url=f"{hook_url}/hook",
                                  webhook_secret=WEBHOOK_SECRET)) as url:
        yield receiver, url, StripeGateway(api_key=API_KEY, api_base=url,
                                           webhook_secret=WEBHOOK_SECRET,
                                           timeout_seconds=2)


def test_webhooks_are_signed_as_stripe_signs_them(hooked):
    receiver, url, gw = hooked
    intent = gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("c"), metadata={"deposit_id": "dep_x"})
    eventually(lambda: any(e["type"] == "payment_intent.succeeded" for e in receiver.events()))
    for headers, body in receiver.requests:
        event = gw.verify_webhook(body,
                                  headers["stripe-signature"])  # stripe.Webhook.construct_event
        assert event.id.startswith("evt_")
    succeeded = [e for e in receiver.events() if e["type"] == "payment_intent.succeeded"][0]
    assert succeeded["object"] == "event"
    assert succeeded["data"]["object"]["id"] == intent.id
    assert succeeded["data"]["object"]["metadata"] == {"deposit_id": "dep_x"}
    assert succeeded["request"]["idempotency_key"]

    headers, body = receiver.requests[0]
    with pytest.raises(WebhookSignatureInvalid):
        gw.verify_webhook(body.replace(b"evt_", b"evt_X"), headers["stripe-signature"])
    old = signature_header(body.decode(), WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookSignatureInvalid):
        gw.verify_webhook(body, old)
    with pytest.raises(WebhookSignatureInvalid):
        gw.verify_webhook(body, None)


def test_failed_deliveries_are_retried(hooked):
    receiver, url, gw = hooked
    receiver.fail_first = 2
    httpx.post(f"{url}/_sandbox/faults", json={})  # no faults: plain delivery
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=key("c"), confirm=False)
    eventually(lambda: len(receiver.requests) >= 3, timeout=5)
    ids = [e["id"] for e in receiver.events()[:3]]
    assert len(set(ids)) == 1  # the same event, three attempts


def test_duplicated_dropped_and_reordered_webhooks(hooked):
    receiver, url, gw = hooked
    httpx.post(f"{url}/_sandbox/faults", json={"webhook_duplicate_rate": 1.0})
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=key("c"), confirm=False)
    eventually(lambda: len(receiver.requests) == 2)
    assert receiver.events()[0]["id"] == receiver.events()[1]["id"]

    receiver.requests.clear()
    httpx.post(f"{url}/_sandbox/faults", json={"webhook_duplicate_rate": 0.0,
                                               "webhook_drop_rate": 1.0})
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=key("c"))
    time.sleep(0.3)
    assert receiver.requests == []
    withheld = httpx.get(f"{url}/_sandbox/webhooks").json()["withheld"]
    assert {"payment_intent.created", "charge.succeeded",
            "payment_intent.succeeded"} <= {w["type"] for w in withheld}
    released = httpx.post(f"{url}/_sandbox/webhooks/withheld/release").json()["released"]
    assert released == len(withheld)
    eventually(lambda: len(receiver.requests) == len(withheld))

    receiver.requests.clear()
    httpx.post(f"{url}/_sandbox/faults", json={"webhook_drop_rate": 0.0,
                                               "webhook_reorder_window_ms": 200})
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=key("c"))
    eventually(lambda: len(receiver.requests) == 3)
    assert [e["type"] for e in receiver.events()] == [
        "payment_intent.succeeded", "charge.succeeded", "payment_intent.created"]


def test_async_settlement_sends_the_verdict_later(hooked):
    receiver, url, gw = hooked
    httpx.post(f"{url}/_sandbox/faults", json={"async_settle_ms": 200})
    intent = gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("c"))
    assert intent.status == "processing"
    eventually(lambda: any(e["type"] == "payment_intent.succeeded" for e in receiver.events()))
    assert gw.retrieve_payment_intent(intent.id).succeeded


def test_a_processing_payment_cannot_be_canceled_as_at_stripe(sandbox):
    """Stripe refuses to cancel a card payment the network already has: 400
    payment_intent_unexpected_state, and the payment still finishes on its own."""
    httpx.post(f"{sandbox.base_url}/_sandbox/faults", json={"async_settle_ms": 300})
    gw = sandbox.gateway
    intent = gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("create"))
    assert intent.status == "processing"
    with pytest.raises(GatewayInvalidRequest) as caught:
        gw.cancel_payment_intent(intent.id, idempotency_key=key("cancel"), reason="abandoned")
    assert caught.value.http_status == 400
    assert caught.value.code == "payment_intent_unexpected_state"
    assert "status of processing" in caught.value.message
    assert eventually(lambda: gw.retrieve_payment_intent(intent.id).succeeded)


# --- payouts, refunds that fail, balance transactions --------------------------------------------

def test_payouts_settle_or_fail(sandbox):
    gw = sandbox.gateway
    paid = gw.create_payout(amount=700, currency="USD", idempotency_key=key("p"),
                            destination="ba_player_1")
    assert paid.id.startswith("po_") and paid.status == "pending" and paid.amount == 700
    assert eventually(lambda: gw.retrieve_payout(paid.id).status == "paid")
    failed = gw.create_payout(amount=800, currency="USD", idempotency_key=key("p"),
                              destination="ba_fail_closed")
    after = eventually(lambda: (p := gw.retrieve_payout(failed.id)).status == "failed" and p)
    assert after.failure_code == "account_closed"
    same = gw.create_payout(amount=700, currency="USD", idempotency_key=key("p2"),
                            destination="ba_player_1")
    assert same.id != paid.id


def test_refund_that_fails_later(sandbox):
    gw = sandbox.gateway
    intent = gw.create_payment_intent(amount=2000, currency="USD",
                                      payment_method="pm_card_refundFail",
                                      idempotency_key=key("c"))
    refund = gw.create_refund(payment_intent=intent.id, idempotency_key=key("r"))
    assert refund.status == "pending"
    failed = eventually(lambda: (r := gw.retrieve_refund(refund.id)).status == "failed" and r)
    assert failed.failure_reason == "expired_or_canceled_card"


def test_balance_transactions_record_every_movement(sandbox):
    gw = sandbox.gateway
    since = int(time.time())
    intent = gw.create_payment_intent(amount=10_000, currency="USD", payment_method="pm_card_visa",
                                      idempotency_key=key("c"))
    refund = gw.create_refund(payment_intent=intent.id, amount=2_500, idempotency_key=key("r"))
    payout = gw.create_payout(amount=5_000, currency="USD", idempotency_key=key("p"))
    page = gw.list_balance_transactions(created_gte=since, limit=100)
    by_source = {t.source: t for t in page.items}
    charge = by_source[intent.latest_charge]
    assert (charge.type, charge.amount, charge.fee, charge.net) == ("charge", 10_000, 320, 9_680)
    assert (by_source[refund.id].type, by_source[refund.id].amount) == ("refund", -2_500)
    assert (by_source[payout.id].type, by_source[payout.id].amount) == ("payout", -5_000)
    first = gw.list_balance_transactions(created_gte=since, limit=1)
    assert first.has_more and len(first.items) == 1
    nxt = gw.list_balance_transactions(created_gte=since, limit=1, starting_after=first.items[0].id)
    assert nxt.items[0].id != first.items[0].id


def test_webhooks_can_be_delayed(hooked):
    receiver, url, gw = hooked
    httpx.post(f"{url}/_sandbox/config",
               json={"enabled_events": ["payment_intent.succeeded"]}).raise_for_status()
    httpx.post(f"{url}/_sandbox/faults", json={"webhook_delay_ms": 700}).raise_for_status()
    started = time.monotonic()
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=key("c"))
    eventually(lambda: receiver.requests)
    assert time.monotonic() - started >= 0.7


def test_enabled_events_limit_what_is_sent(hooked):
    receiver, url, gw = hooked
    httpx.post(f"{url}/_sandbox/config",
               json={"enabled_events": ["payment_intent.succeeded"]}).raise_for_status()
    gw.create_payment_intent(amount=1000, currency="USD", payment_method="pm_card_visa",
                             idempotency_key=key("c"))
    eventually(lambda: receiver.requests)
    time.sleep(0.2)
    assert [e["type"] for e in receiver.events()] == ["payment_intent.succeeded"]
