"""adapters/kyc/http.py over real HTTP against the KYC sandbox: a check sent, then read back
(pending, then its verdict), and the provider's failures mapped as `submit_check` maps them:
5xx, 429 and an unreachable provider -> KycProviderUnavailable; 404 and other 4xx ->
KycProviderError."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.kyc import (
    CheckStatus,
    HttpKycProvider,
    KycProviderError,
    KycProviderUnavailable,
    Person,
    SubmittedDocument,
)
from sandboxes.kyc import create_app as create_kyc_sandbox
from tests.support.net import free_port
from tests.support.servers import serve_asgi

PERSON = Person("Ada", "Lovelace", "1990-12-10")


@pytest.fixture
def sandbox() -> Iterator[str]:
    """A KYC sandbox that decides at once and delivers no webhook (the lost-webhook case)."""
    with serve_asgi(create_kyc_sandbox(webhook_url=None, delay_seconds=0.0)) as url:
        yield url


def send(provider: HttpKycProvider, number: str, reference: str = "kyc-p:r1:doc:1"):
    return provider.submit_check(reference=reference, person=PERSON,
                                 document=SubmittedDocument("passport", number, "US"),
                                 idempotency_key=reference)


def test_a_check_is_read_back_with_its_verdict_once_decided(sandbox):
    provider = HttpKycProvider(base_url=sandbox)
    check = send(provider, "RED-RETRY-7")
    status = _wait_decided(provider, check.id)
    assert status == CheckStatus(check.id, "kyc-p:r1:doc:1", "completed", "RED", "RETRY",
                                 "document_unreadable")
    green = _wait_decided(provider, send(provider, "P1234567", "kyc-p:r1:doc:2").id)
    assert (green.result, green.next, green.reason) == ("GREEN", None, None)


def test_an_undecided_check_reads_pending_without_a_verdict(sandbox):
    provider = HttpKycProvider(base_url=sandbox)
    check = send(provider, "SILENT-1")
    status = provider.get_check(check.id)
    assert status == CheckStatus(check.id, "kyc-p:r1:doc:1", "pending")
    assert not status.decided


def test_an_unknown_check_is_a_provider_error(sandbox):
    provider = HttpKycProvider(base_url=sandbox)
    with pytest.raises(KycProviderError, match="404"):
        provider.get_check("chk_nope")
    # An id that is not a path segment is sent as one (quoted), and is just as unknown.
    with pytest.raises(KycProviderError, match="404"):
        provider.get_check("../checks")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_provider_outage_is_unavailable_for_reads_and_sends_alike(sandbox, status):
    provider = HttpKycProvider(base_url=sandbox)
    check = send(provider, "SILENT-2")
    httpx.post(f"{sandbox}/_sandbox/config", json={"error_status": status}).raise_for_status()
    with pytest.raises(KycProviderUnavailable, match=str(status)):
        provider.get_check(check.id)
    with pytest.raises(KycProviderUnavailable, match=str(status)):
        send(provider, "SILENT-3", "kyc-p:r1:doc:3")
    httpx.post(f"{sandbox}/_sandbox/config", json={"error_status": None}).raise_for_status()
    assert provider.get_check(check.id).status == "pending"


def test_an_unreachable_provider_is_unavailable():
    provider = HttpKycProvider(base_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2.0)
    with pytest.raises(KycProviderUnavailable, match="unreachable"):
        provider.get_check("chk_000001")


def _wait_decided(provider: HttpKycProvider, check_id: str) -> CheckStatus:
    """The sandbox decides right after answering the send (its delay is 0): a few reads."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = provider.get_check(check_id)
        if status.decided:
            return status
        time.sleep(0.02)
    raise AssertionError(f"check {check_id} was never decided")
