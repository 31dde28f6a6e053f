"""What settlepay needs from a KYC provider, in its own words (no vendor types).

Failures: `KycProviderUnavailable` (5xx, timeouts: retry with the same idempotency key) and
`KycProviderError` (the request itself is wrong: retrying cannot help).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

GREEN, RED = "GREEN", "RED"
RETRY, FINAL = "RETRY", "FINAL"
PENDING, COMPLETED = "pending", "completed"


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    date_of_birth: str | None      # ISO date


@dataclass(frozen=True)
class SubmittedDocument:
    type: str                      # passport, driving_licence, id_card
    number: str
    country: str                   # ISO 3166 alpha-2


@dataclass(frozen=True)
class DocumentCheck:
    id: str                        # the provider's check id
    reference: str                 # ours: `kyc-<player>:<run id>:doc:<n>`
    status: str                    # pending (the verdict comes by webhook)


@dataclass(frozen=True)
class CheckStatus:
    """A check read back from the provider (`get_check`): the fallback for a lost webhook."""
    id: str
    reference: str
    status: str                    # pending | completed
    result: str | None = None      # completed: GREEN | RED
    next: str | None = None        # RED only: RETRY | FINAL
    reason: str | None = None

    @property
    def decided(self) -> bool:
        return self.status == COMPLETED and self.result is not None


@dataclass(frozen=True)
class DocumentVerdict:
    """A verified webhook: the provider's verdict on one check."""
    event_id: str
    check_id: str
    reference: str
    result: str                    # GREEN | RED
    next: str | None               # RED only: RETRY (send another document) | FINAL
    reason: str | None = None


class KycProviderError(Exception):
    """The provider refused the request (4xx): retrying the same request cannot help."""


class KycProviderUnavailable(Exception):
    """5xx, timeout or connection failure: retry with the same idempotency key."""


class WebhookSignatureInvalid(Exception):
    """A webhook whose signature is missing, wrong or too old."""


class KycProvider(Protocol):
    def submit_check(self, *, reference: str, person: Person, document: SubmittedDocument,
                     idempotency_key: str) -> DocumentCheck: ...

    def get_check(self, check_id: str) -> CheckStatus:
        """The check and, once decided, its verdict (an unknown check: KycProviderError)."""
        ...
