"""Signing on the Standard Webhooks wire format, checked with the reference library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks import signing


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_signed_headers_verify_with_the_reference_library():
    secret = signing.new_secret()
    body = signing.body_of("deposit.succeeded", datetime.now(UTC), {"amount": 1000})
    headers = signing.signed_headers([secret], "evt_1", datetime.now(UTC), body)
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-signature"].startswith("v1,")
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "deposit.succeeded" and payload["data"] == {"amount": 1000}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_during_a_rotation_each_secret_verifies_its_own_signature():
    new, old = signing.new_secret(), signing.new_secret()
    body = b'{"type":"x"}'
    headers = signing.signed_headers([new, old], "evt_2", datetime.now(UTC), body)
    first, second = headers["webhook-signature"].split(" ")
    for secret, signature in ((new, first), (old, second)):
        Webhook(secret).verify(body, {**headers, "webhook-signature": signature},
                               json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**headers, "webhook-signature": second})


def test_a_sealed_secret_opens_only_with_its_key():
    key = "c2V0dGxlcGF5LWRldi13ZWJob29rLXNlY3JldHMtMDA="
    secret = signing.new_secret()
    sealed = signing.seal(secret, key)
    assert secret not in sealed
    assert signing.unseal(sealed, key) == secret
    other_key = base64.urlsafe_b64encode(b"another-key-of-thirty-two-bytes!").decode()
    with pytest.raises(signing.SecretInvalid):
        signing.unseal(sealed, other_key)


def test_secrets_outside_the_spec_are_refused():
    for bad in ("abc", "whsec_not-base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(signing.SecretInvalid):
            signing.secret_key(bad)


def test_the_body_is_the_same_bytes_every_time_with_type_timestamp_and_data():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = signing.body_of("bet.settled", at, {"b": 2, "a": 1})
    assert first == signing.body_of("bet.settled", at, {"a": 1, "b": 2})
    assert first == (b'{"data":{"a":1,"b":2},"timestamp":"2026-01-02T03:04:05+00:00",'
                     b'"type":"bet.settled"}')
