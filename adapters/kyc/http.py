"""The KYC provider over HTTP (httpx): the sandbox in development, the vendor's API in production.

One request per call, no retries here (Temporal retries the activity with the same
idempotency key). Must never touch the database or decide a KYC outcome.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import httpx

from adapters.kyc.interface import (
    CheckStatus,
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
        body = _answer(response, "refused the check")
        return DocumentCheck(id=body["id"], reference=body["reference"], status=body["status"])

    def get_check(self, check_id: str) -> CheckStatus:
        try:
            response = httpx.get(f"{self._base_url}/v1/checks/{quote(check_id, safe='')}",
                                 timeout=self._timeout)
        except httpx.HTTPError as error:
            raise KycProviderUnavailable(f"KYC provider unreachable: {error}") from error
        body = _answer(response, f"refused to read check {check_id}")
        return CheckStatus(id=body["id"], reference=body["reference"], status=body["status"],
                           result=body.get("result"), next=body.get("next"),
                           reason=body.get("reason"))


def _answer(response: httpx.Response, refused: str) -> dict[str, Any]:
    """The JSON body of a successful answer; 5xx and 429 -> KycProviderUnavailable (retry),
    any other 4xx -> KycProviderError (the request itself is wrong)."""
    if response.status_code >= 500 or response.status_code == 429:
        raise KycProviderUnavailable(f"KYC provider answered {response.status_code}")
    if response.status_code >= 400:
        raise KycProviderError(f"KYC provider {refused} ({response.status_code}): "
                               f"{response.text[:200]}")
    return response.json()
