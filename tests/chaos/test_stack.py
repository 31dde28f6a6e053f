"""The chaos stack's KYC sandbox retries a verdict webhook like a real provider (for minutes,
not 5 times in ~6 s): seed 1 lost three verdicts sent while the API was SIGKILLed and
restarting (~10 s), and their cases waited in `documents` past the run."""

from __future__ import annotations

import httpx

from chaos.stack import KYC_WEBHOOK_RETRY_SECONDS, configure_kyc_sandbox
from sandboxes.kyc import create_app as create_kyc_sandbox
from tests.support.servers import serve_asgi


def test_the_kyc_sandbox_is_told_to_retry_longer_than_an_api_restart():
    with serve_asgi(create_kyc_sandbox(webhook_url=None)) as kyc_url:
        assert httpx.get(f"{kyc_url}/_sandbox/config").json()["webhook_retry_seconds"] is None
        configure_kyc_sandbox(kyc_url)
        config = httpx.get(f"{kyc_url}/_sandbox/config").json()
    assert config["webhook_retry_seconds"] == KYC_WEBHOOK_RETRY_SECONDS >= 300
