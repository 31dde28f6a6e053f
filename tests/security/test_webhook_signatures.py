"""Provider webhooks: a bad, expired or replayed signature is refused, a genuine delivery
replayed moves nothing twice.

Stripe (`Stripe-Signature: t=..,v1=..`, 300 s tolerance): each forged `payment_intent.succeeded`
names a real 3-D Secure deposit waiting for its verdict, so accepting it would credit money; it
is answered 400, no event is stored, and the deposit still waits, uncredited. KYC (Standard
Webhooks, 5 minutes either way): each forged GREEN names a real document waiting at the
provider; it is answered 400 and the case still waits for documents.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from adapters.kyc import sign_webhook
from sandboxes.stripe.signing import signature_header
from tests.support.deposits import deposit_body, wait_for_status
from tests.support.factories import Player, cash, events, make_player
from tests.support.kyc import checks_of, kyc_of, submit, wait_kyc
from tests.support.stack import STRIPE_WEBHOOK_SECRET, Stack

WRONG_STRIPE_SECRET = "whsec_not_the_configured_secret"
WRONG_KYC_SECRET = "whsec_" + base64.b64encode(b"not-the-configured-kyc-secret").decode()


# --- Stripe -----------------------------------------------------------------------------------

async def waiting_deposit(stack: Stack, http: httpx.AsyncClient,
                          player: Player) -> dict[str, Any]:
    posted = await http.post("/v1/deposits", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex},
        json=deposit_body(player, amount=3_000, payment_method="pm_card_authenticationRequired"))
    assert posted.status_code == 202, posted.text
    return await wait_for_status(http, player, posted.json()["id"], ("requires_action",))


def succeeded_event(stack: Stack, deposit: dict[str, Any]) -> str:
    """A `payment_intent.succeeded` event for the deposit's PaymentIntent, as Stripe sends it."""
    [intent] = stack.payment_intents(deposit["id"])
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event",
                       "type": "payment_intent.succeeded", "created": int(time.time()),
                       "data": {"object": {**intent, "status": "succeeded"}}},
                      separators=(",", ":"))


def stored(stack: Stack, event: str) -> bool:
    with stack.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM stripe_events WHERE id = :id"),
                            {"id": json.loads(event)["id"]}).scalar_one() > 0


def stripe_v1(secret: str, timestamp: int, payload: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(),
                    hashlib.sha256).hexdigest()


def forged_stripe(kind: str, event: str, other: str) -> tuple[str, dict[str, str]]:
    """(body, headers) of one way to forge a Stripe delivery of `event`."""
    now = int(time.time())
    if kind == "no_signature":
        return event, {}
    if kind == "another_secret":
        return event, {"Stripe-Signature": signature_header(event, WRONG_STRIPE_SECRET)}
    if kind == "body_changed_after_signing":
        changed = event.replace('"amount":3000', '"amount":300000')
        assert changed != event
        return changed, {"Stripe-Signature": signature_header(event, STRIPE_WEBHOOK_SECRET)}
    if kind == "signed_more_than_300_seconds_ago":
        return event, {"Stripe-Signature": signature_header(event, STRIPE_WEBHOOK_SECRET,
                                                            timestamp=now - 301)}
    if kind == "signature_of_another_event":
        return event, {"Stripe-Signature": signature_header(other, STRIPE_WEBHOOK_SECRET)}
    if kind == "timestamp_changed_after_signing":
        mac = stripe_v1(STRIPE_WEBHOOK_SECRET, now - 1, event)
        return event, {"Stripe-Signature": f"t={now},v1={mac}"}
    if kind == "only_a_v0_signature":
        mac = stripe_v1(STRIPE_WEBHOOK_SECRET, now, event)
        return event, {"Stripe-Signature": f"t={now},v0={mac}"}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "no_signature", "another_secret", "body_changed_after_signing",
    "signed_more_than_300_seconds_ago", "signature_of_another_event",
    "timestamp_changed_after_signing", "only_a_v0_signature"])
async def test_a_forged_stripe_success_is_refused_and_credits_nothing(
        kind: str, stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    deposit = await waiting_deposit(stack, http, player)
    event = succeeded_event(stack, deposit)
    body, headers = forged_stripe(kind, event, succeeded_event(stack, deposit))
    answer = await http.post("/v1/webhooks/stripe", content=body,
                             headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "webhook_signature_invalid"
    assert not stored(stack, body)
    again = await http.get(f"/v1/deposits/{deposit['id']}", headers=player.headers)
    assert again.json()["status"] == "requires_action"
    assert cash(stack.engine, player.id) == 0


async def test_a_genuine_stripe_event_replayed_moves_no_money_twice_and_a_late_replay_is_refused(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    deposit = await waiting_deposit(stack, http, player)
    httpx.post(f"{stack.stripe_url}/_sandbox/payment_intents/"
               f"{deposit['gateway']['payment_intent']}/authenticate",
               json={"outcome": "succeed"}).raise_for_status()
    assert (await wait_for_status(http, player, deposit["id"]))["status"] == "succeeded"
    event = succeeded_event(stack, deposit)
    signed = {"Content-Type": "application/json",
              "Stripe-Signature": signature_header(event, STRIPE_WEBHOOK_SECRET)}
    first = await http.post("/v1/webhooks/stripe", content=event, headers=signed)
    replays = [await http.post("/v1/webhooks/stripe", content=event, headers=signed)
               for _ in range(3)]
    assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    assert [(r.status_code, r.json()["duplicate"]) for r in replays] == [(200, True)] * 3
    late = signature_header(event, STRIPE_WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    refused = await http.post("/v1/webhooks/stripe", content=event,
                              headers={**signed, "Stripe-Signature": late})
    assert refused.status_code == 400
    assert cash(stack.engine, player.id) == 3_000
    with stack.engine.connect() as conn:
        credits = conn.execute(text(
            "SELECT count(*) FROM ledger_transactions WHERE idempotency_key = :k"),
            {"k": f"deposit-{deposit['id']}:credit"}).scalar_one()
    assert credits == 1
    assert events(stack.engine, deposit["id"]).count("deposit.succeeded") == 1


# --- KYC (Standard Webhooks) --------------------------------------------------------------------

async def waiting_document(stack: Stack, http: httpx.AsyncClient,
                           player: Player) -> dict[str, Any]:
    """A document the provider holds without answering; the verdict body it would send."""
    assert (await submit(http, player, f"SILENT{uuid.uuid4().hex[:8]}")).status_code == 202
    await wait_kyc(http, player, ("documents",))
    [check] = checks_of(stack, player)
    return {"type": "check.completed", "data": {
        "check_id": check["id"], "reference": check["reference"], "result": "GREEN"}}


def standard_headers(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, at, body),
            "content-type": "application/json"}


def forged_kyc(kind: str, secret: str, body: str) -> tuple[str, dict[str, str]]:
    now, message = datetime.now(UTC), f"msg_{uuid.uuid4().hex}"
    if kind == "no_signature":
        return body, {"content-type": "application/json"}
    if kind == "another_secret":
        return body, standard_headers(WRONG_KYC_SECRET, message, now, body)
    if kind == "body_changed_after_signing":
        return body.replace("check.completed", "check.completed "), standard_headers(
            secret, message, now, body)
    if kind == "signed_more_than_5_minutes_ago":
        return body, standard_headers(secret, message, now - timedelta(minutes=6), body)
    if kind == "signed_more_than_5_minutes_ahead":
        return body, standard_headers(secret, message, now + timedelta(minutes=6), body)
    if kind == "signature_of_another_message_id":
        headers = standard_headers(secret, message, now, body)
        return body, {**headers, "webhook-id": f"msg_{uuid.uuid4().hex}"}
    if kind == "timestamp_changed_after_signing":
        headers = standard_headers(secret, message, now - timedelta(seconds=1), body)
        return body, {**headers, "webhook-timestamp": str(int(now.timestamp()))}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "no_signature", "another_secret", "body_changed_after_signing",
    "signed_more_than_5_minutes_ago", "signed_more_than_5_minutes_ahead",
    "signature_of_another_message_id", "timestamp_changed_after_signing"])
async def test_a_forged_kyc_verdict_is_refused_and_the_case_still_waits(
        kind: str, stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    verdict = json.dumps(await waiting_document(stack, http, player))
    body, headers = forged_kyc(kind, stack.settings.kyc_webhook_secret, verdict)
    answer = await http.post("/v1/webhooks/kyc", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "webhook_signature_invalid"
    kyc = await kyc_of(http, player)
    assert kyc["status"] == "documents" and kyc["verified_at"] is None
    assert events(stack.engine, player.id) == []


async def test_a_genuine_kyc_verdict_replayed_is_taken_once(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    body = json.dumps(await waiting_document(stack, http, player)).encode()
    signed = sign_webhook(stack.settings.kyc_webhook_secret, f"msg_{uuid.uuid4().hex}", body)
    answers = [await http.post("/v1/webhooks/kyc", content=body, headers=signed)
               for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    kyc = await wait_kyc(http, player, ("verified",))
    assert [h["state"] for h in kyc["history"]].count("verified") == 1
    assert events(stack.engine, player.id) == ["kyc.verified"]
    assert {a.json()["outcome"] for a in answers} <= {"signalled", "workflow_closed"}
