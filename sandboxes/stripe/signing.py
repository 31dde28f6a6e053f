"""Signing webhooks exactly as Stripe does: `Stripe-Signature: t=<unix>,v1=<hex hmac>`.

v1 = HMAC-SHA256(secret, f"{t}.{raw body}"), the scheme `stripe.Webhook.construct_event`
verifies. The secret is used as-is (UTF-8 bytes), like Stripe's `whsec_...` secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
