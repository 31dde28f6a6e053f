"""The KYC provider over HTTP (httpx): the sandbox in development, the vendor's API in production.

One request per call, no retries here (Temporal retries the activity with the same
idempotency key). Must never touch the database or decide a KYC outcome.
"""

from __future__ import annotations

from dataclasses import asdict

import httpx

from adapters.kyc.interface import (
    DocumentCheck,
    KycProviderError,
    KycProviderUnavailable,
    Person,
    SubmittedDocument,
)


class HttpKycProvider:
    def __init__(self, *, base_url: str, timeout_seconds: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds

    def submit_check(self, *, reference: str, person: Person, document: SubmittedDocument,
                     idempotency_key: str) -> DocumentCheck:
        try:
            response = httpx.post(f"{self._base_url}/v1/checks", timeout=self._timeout,
                                  headers={"Idempotency-Key": idempotency_key},
                                  json={"reference": reference, "person": asdict(person),
                                        "document": asdict(document)})
        except httpx.HTTPError as error:
            raise KycProviderUnavailable(f"KYC provider unreachable: {error}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise KycProviderUnavailable(f"KYC provider answered {response.status_code}")
        if response.status_code >= 400:
            raise KycProviderError(f"KYC provider refused the check ({response.status_code}): "
                                   f"{response.text[:200]}")
        body = response.json()
        return DocumentCheck(id=body["id"], reference=body["reference"], status=body["status"])
