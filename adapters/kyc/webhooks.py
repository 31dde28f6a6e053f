"""Signed KYC webhooks (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).

`verify_webhook` checks the signature over the raw body before anything is parsed;
`sign_webhook` is what the provider (our sandbox) does. Must never accept an unsigned body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapters.kyc.interface import DocumentVerdict, WebhookSignatureInvalid


def sign_webhook(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    """The headers that sign `body` (for the sandbox provider and tests)."""
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, now, body.decode())
    return {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature, "content-type": "application/json"}


def verify_webhook(secret: str, body: bytes, headers: Mapping[str, str]) -> DocumentVerdict:
    wanted = {name: headers.get(name)
              for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    if not all(wanted.values()):
        raise WebhookSignatureInvalid("missing Standard Webhooks headers")
    try:
        payload = Webhook(secret).verify(body, wanted)
    except WebhookVerificationError as error:
        raise WebhookSignatureInvalid(str(error)) from error
    if isinstance(payload, (bytes, str)):
        payload = json.loads(payload)
    try:
        data = payload["data"]
        return DocumentVerdict(event_id=wanted["webhook-id"], check_id=data["check_id"],
                               reference=data["reference"], result=data["result"],
                               next=data.get("next"), reason=data.get("reason"))
    except (KeyError, TypeError) as error:
        raise WebhookSignatureInvalid(f"signed but malformed payload: {error}") from error
