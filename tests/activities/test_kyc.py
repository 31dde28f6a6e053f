"""The KYC activity that reads a check back from the provider (the KYC sandbox over HTTP),
run with Temporal's ActivityEnvironment: None while the check is undecided, the verdict (as the
workflow takes a webhook's) once decided, a refusal for a check the provider does not know or
that is not the document's, and an outage left to Temporal's retries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.kyc import KycActivities
from adapters.kyc import HttpKycProvider, KycProviderUnavailable, Person, SubmittedDocument
from sandboxes.kyc import create_app as create_kyc_sandbox
from settlepay.config import Settings
from tests.support.servers import serve_asgi
from workflows.contracts.kyc import (
    CheckLookup,
    DocumentResult,
    KycRefusal,
    NextStep,
    Verdict,
)

REFERENCE = "kyc-ply_test:5f5cb9f0-17d0-4c70-9f14-3f288e608c5c:doc:1"


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_asgi(create_kyc_sandbox(webhook_url=None, delay_seconds=0.0)) as url:
        yield url


def send(sandbox: str, number: str, reference: str = REFERENCE) -> str:
    return HttpKycProvider(base_url=sandbox).submit_check(
        reference=reference, person=Person("Ada", "Lovelace", None),
        document=SubmittedDocument("passport", number, "US"), idempotency_key=reference).id


def fetch(engine: Engine, settings: Settings, sandbox: str, lookup: CheckLookup):
    activities = KycActivities(engine, settings, HttpKycProvider(base_url=sandbox))
    return ActivityEnvironment().run(activities.fetch_verdict, lookup)


def test_a_decided_check_gives_its_verdict_as_polled(engine, settings, sandbox):
    check_id = send(sandbox, "RED-FINAL-1")
    deadline = time.monotonic() + 10
    while (verdict := fetch(engine, settings, sandbox, CheckLookup(check_id, REFERENCE))) is None:
        assert time.monotonic() < deadline, "the sandbox never decided"
        time.sleep(0.02)
    assert verdict == Verdict(f"poll:{check_id}", check_id, REFERENCE, DocumentResult.RED,
                              NextStep.FINAL, "document_forged", polled=True)


def test_an_undecided_check_gives_none(engine, settings, sandbox):
    check_id = send(sandbox, "SILENT-1")
    assert fetch(engine, settings, sandbox, CheckLookup(check_id, REFERENCE)) is None


def test_an_unknown_check_or_another_documents_check_is_refused(engine, settings, sandbox):
    with pytest.raises(ApplicationError) as unknown:
        fetch(engine, settings, sandbox, CheckLookup("chk_nope", REFERENCE))
    assert unknown.value.type == KycRefusal.PROVIDER_REFUSED and unknown.value.non_retryable
    other = send(sandbox, "P1234567", "kyc-ply_other:5f5cb9f0-17d0-4c70-9f14-3f288e608c5c:doc:1")
    with pytest.raises(ApplicationError) as mismatch:
        fetch(engine, settings, sandbox, CheckLookup(other, REFERENCE))
    assert mismatch.value.type == KycRefusal.PROVIDER_REFUSED and mismatch.value.non_retryable


def test_a_provider_outage_is_left_to_temporals_retries(engine, settings, sandbox):
    check_id = send(sandbox, "SILENT-2")
    httpx.post(f"{sandbox}/_sandbox/config", json={"error_status": 503}).raise_for_status()
    with pytest.raises(KycProviderUnavailable):
        fetch(engine, settings, sandbox, CheckLookup(check_id, REFERENCE))
