"""Secrets are never logged: each flow below runs through the real stack while every log record
of the process (API, worker, adapters, libraries; at DEBUG) is rendered as the processes write
it (tests/support/telemetry.py), and not one line shows a secret the flow handled. (The deposit,
one-time-code withdrawal and KYC flow of tests/settlepay/test_observability.py covers card data,
one-time codes and personal data.)"""

from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp

from adapters.kyc import sign_webhook
from sandboxes.stripe.signing import signature_header
from tests.support.api import make_key
from tests.support.deposits import deposit_body, wait_for_status
from tests.support.factories import make_player
from tests.support.stack import KYC_SECRET, STRIPE_KEY, STRIPE_WEBHOOK_SECRET, Stack
from tests.support.telemetry import CapturedLogs, captured_logs
from tests.support.webhooks import make_endpoint, webhook_settings
from tests.support.withdrawals import FINAL, code_for, ready_player, start, submit, wait_state


def leaks(captured: CapturedLogs, secrets: list[str]) -> dict[str, list[str]]:
    lines = captured.lines()
    assert len(lines) > 5, lines          # the flow did log: the search means something
    found = {secret: [line for line in lines if secret in line] for secret in secrets}
    return {secret: hits[:2] for secret, hits in found.items() if hits}


def idem() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def test_an_api_key_made_used_rolled_and_revoked_is_never_logged(
        stack: Stack, http: httpx.AsyncClient) -> None:
    operator = make_key(stack.engine, "operator", None)
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    with captured_logs() as captured:
        made = await http.post("/v1/api_keys", headers={**operator.headers, **idem()},
                               json={"name": "logged?", "partner_id": partner})
        assert made.status_code == 201, made.text
        key = made.json()
        bearer = {"Authorization": f"Bearer {key['secret']}"}
        assert (await http.get("/v1/players", headers=bearer)).status_code == 200
        almost = key["secret"][:-4] + "0000"
        assert (await http.get("/v1/players", headers={
            "Authorization": f"Bearer {almost}"})).status_code == 401
        assert (await http.get("/v1/players", headers={"X-Api-Key": almost})).status_code == 401
        rolled = await http.post(f"/v1/api_keys/{key['id']}/roll", headers={**bearer, **idem()},
                                 json={"expires_in_seconds": 0})
        assert rolled.status_code == 201, rolled.text
        new = rolled.json()["secret"]
        revoked = await http.delete(f"/v1/api_keys/{rolled.json()['id']}", headers={
            **operator.headers, **idem()})
        assert revoked.status_code == 200, revoked.text
        assert (await http.get("/v1/players", headers={
            "Authorization": f"Bearer {new}"})).status_code == 401
    secrets = [key["secret"], almost, new, operator.plaintext]
    assert leaks(captured, secrets + [s[16:] for s in secrets]) == {}


async def test_a_totp_secret_and_its_codes_are_never_logged(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = ready_player(stack, cash=3_000)
    with captured_logs() as captured:
        enrolled = await http.post(f"/v1/players/{player.id}/2fa/totp",
                                   headers={**player.headers, **idem()}, json={})
        assert enrolled.status_code == 201, enrolled.text
        uri = enrolled.json()["provisioning_uri"]
        secret = parse_qs(urlparse(uri).query)["secret"][0]
        authenticator, now = pyotp.TOTP(secret), time.time()
        right = authenticator.at(now)
        wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
        refused = await http.post(f"/v1/players/{player.id}/2fa/totp/confirm",
                                  headers=player.headers, json={"code": wrong})
        assert refused.status_code == 422, refused.text
        confirmed = await http.post(f"/v1/players/{player.id}/2fa/totp/confirm",
                                    headers=player.headers, json={"code": right})
        assert confirmed.status_code == 200, confirmed.text
        withdrawal = (await start(http, player, 1_000))["id"]
        await wait_state(http, player, withdrawal, ("awaiting_2fa",))
        assert (await submit(http, player, withdrawal, wrong)).status_code == 422
        following = authenticator.at(now + 30)
        assert (await submit(http, player, withdrawal, following)).status_code == 200
        assert (await wait_state(http, player, withdrawal, FINAL))["state"] == "paid"
    assert leaks(captured, [secret, uri, right, wrong, following]) == {}


async def test_webhook_signing_secrets_are_never_logged(
        stack: Stack, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    endpoint, first = make_endpoint(stack.engine, webhook_settings(stack.settings),
                                    player.partner_id, "http://127.0.0.1:9/hook")
    with captured_logs() as captured:
        shown = await http.get(f"/v1/webhook_endpoints/{endpoint['id']}/secret",
                               headers=player.headers)
        assert shown.status_code == 200 and shown.json()["secret"] == first, shown.text
        rotated = await http.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                                  headers={**player.headers, **idem()}, json={})
        assert rotated.status_code in (200, 201), rotated.text
        second = rotated.json()["secret"]
        tested = await http.post(f"/v1/webhook_endpoints/{endpoint['id']}/test",
                                 headers={**player.headers, **idem()}, json={})
        assert tested.status_code == 202, tested.text
    secrets = [first, second]
    assert leaks(captured, secrets + [s.removeprefix("whsec_") for s in secrets]) == {}


async def test_provider_secrets_and_webhook_signatures_are_never_logged(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    """A card deposit (the gateway's secret key on every call), its signed webhooks, forged and
    stale ones refused, and KYC verdicts signed right and wrong."""
    player = make_player(stack.engine)
    signatures: list[str] = []
    with captured_logs() as captured:
        posted = await http.post("/v1/deposits", json=deposit_body(player, amount=2_000),
                                 headers={**player.headers, **idem()})
        assert posted.status_code == 202, posted.text
        deposit = await wait_for_status(http, player, posted.json()["id"])
        assert deposit["status"] == "succeeded", deposit
        event = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event",
                            "type": "payment_intent.succeeded", "created": int(time.time()),
                            "data": {"object": {"id": "pi_unknown", "object": "payment_intent",
                                                "status": "succeeded", "metadata": {}}}})
        for header, status in (
                (signature_header(event, STRIPE_WEBHOOK_SECRET), 200),
                (signature_header(event, STRIPE_WEBHOOK_SECRET,
                                  timestamp=int(time.time()) - 400), 400),
                (signature_header(event, "whsec_forged_by_someone"), 400)):
            signatures.append(header.split("v1=")[1])
            answer = await http.post("/v1/webhooks/stripe", content=event,
                                     headers={"Stripe-Signature": header})
            assert answer.status_code == status, answer.text
        body = json.dumps({"type": "check.completed", "data": {
            "check_id": "chk_x", "reference": f"kyc-nobody:{uuid.uuid4()}:doc:1",
            "result": "GREEN"}})
        wrong = "whsec_" + base64.b64encode(b"a-secret-nobody-configured").decode()
        for secret, status in ((KYC_SECRET, 200), (wrong, 400)):
            signed = sign_webhook(secret, f"msg_{uuid.uuid4().hex}", body.encode())
            signatures.append(signed["webhook-signature"].split(",", 1)[1])
            answer = await http.post("/v1/webhooks/kyc", content=body, headers=signed)
            assert answer.status_code == status, answer.text
    secrets = [STRIPE_KEY, STRIPE_WEBHOOK_SECRET, KYC_SECRET, wrong, *signatures]
    assert leaks(captured, secrets) == {}


async def test_the_processs_own_keys_are_never_logged(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    """Keys the processes hold and use on this path: payload encryption (every Temporal
    payload), TOTP sealing, the one-time code HMAC secret, webhook secret sealing."""
    player = ready_player(stack, cash=3_000)
    settings = stack.settings
    with captured_logs() as captured:
        withdrawal = (await start(http, player, 1_000))["id"]
        await wait_state(http, player, withdrawal, ("awaiting_2fa",))
        code = await code_for(stack, player, withdrawal)
        assert (await submit(http, player, withdrawal, code)).status_code == 200
        assert (await wait_state(http, player, withdrawal, FINAL))["state"] == "paid"
        make_endpoint(stack.engine, webhook_settings(settings), player.partner_id,
                      "http://127.0.0.1:9/keys")
    secrets = [*settings.payload_codec_keys.values(), settings.totp_encryption_key,
               settings.otp_code_secret, settings.webhooks_secret_encryption_key, code]
    assert leaks(captured, secrets) == {}
