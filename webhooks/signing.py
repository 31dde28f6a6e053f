"""Standard Webhooks 1.0 signing: secrets, signatures, the headers of one attempt, and sealing
secrets at rest.

    secret = new_secret()                                  # "whsec_" + base64(32 random bytes)
    headers = signed_headers([secret], event_id, attempt_time, body)
    # webhook-id, webhook-timestamp, webhook-signature: "v1,<base64 HMAC-SHA256>" per secret

The signed content is `<webhook-id>.<webhook-timestamp>.<body>`, exactly what the reference
verifier (`standardwebhooks` on PyPI) checks. Must never: sign with a secret it cannot decode,
or log a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as random_bytes
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32            # the spec allows 24 to 64
USER_AGENT = "settlepay-webhooks/1"


class SecretInvalid(ValueError):
    """Not `whsec_` + base64 of 24 to 64 bytes."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_bytes.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretInvalid("a signing secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as error:
        raise SecretInvalid("a signing secret is base64 after whsec_") from error
    if not 24 <= len(key) <= 64:
        raise SecretInvalid("a signing secret holds 24 to 64 bytes")
    return key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: Sequence[str], message_id: str, at: datetime,
                   body: bytes) -> dict[str, str]:
    """The headers of one attempt: one signature per secret (during a rotation: new, old)."""
    timestamp = int(at.timestamp())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body)
                                      for s in secrets),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def body_of(event_type: str, occurred_at: datetime, data: Any) -> bytes:
    """The body `{"type", "timestamp", "data"}`: compact, keys sorted, the same bytes each time."""
    return json.dumps({"type": event_type, "timestamp": occurred_at.isoformat(), "data": data},
                      sort_keys=True, separators=(",", ":"), default=str).encode()


# --- secrets at rest --------------------------------------------------------------------------

def seal(secret: str, key: str) -> str:
    """The secret encrypted with the Fernet key `key` (settings.webhooks_secret_encryption_key)."""
    return Fernet(key.encode()).encrypt(secret.encode()).decode()


def unseal(token: str, key: str) -> str:
    try:
        return Fernet(key.encode()).decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise SecretInvalid("the sealed secret does not open with this key") from error
