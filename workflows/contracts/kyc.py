"""The KYC workflow's contract: what crosses its boundary, and the names it is known by.

The API starts `WORKFLOW` as `workflow_id(player)` (signal-with-start `Signal.SUBMIT_DOCUMENT`)
and calls `Update.REVIEW`; the webhook route signals `Signal.DOCUMENT_RESULT` to the run named
in the document's reference; the worker registers the activities under `Activity` names; the
store, the API and the search attributes spell states with `KycState`, so each is written once.

A document's reference (also its provider idempotency key) names the run that sent it,
`kyc-<player>:<run id>:doc:<attempt>`: a case reopened after `expired` is a new run, so its
documents are new checks at the provider, and a verdict for an earlier run's document can only
reach that (closed) run. Must never: import anything with I/O (workflows import it directly).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

WORKFLOW = "Kyc"
PREFIX = "kyc-"


def workflow_id(player_id: str) -> str:
    """One KYC workflow id per player; a case reopened after `expired` is a new run of it."""
    return f"{PREFIX}{player_id}"


class KycState(StrEnum):
    """A case's state: the kyc_cases row, the API's `status`, the `KycState` search attribute
    (upper case there, as Temporal UI filters are written: `KycState = "REVIEW"`)."""

    PENDING = "pending"
    REVIEW = "review"
    DOCUMENTS = "documents"
    RESUBMISSION_REQUIRED = "resubmission_required"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (KycState.VERIFIED, KycState.REJECTED, KycState.EXPIRED)

    @property
    def search_value(self) -> str:
        return self.value.upper()


class ReviewPending(StrEnum):
    """Values of the `ReviewPending` search attribute a KYC case sets while it waits."""

    SANCTIONS = "kyc_sanctions"


class Step(StrEnum):
    """Where in the runbook a history row was written."""

    OPENED = "opened"
    AGE = "age"
    SANCTIONS = "sanctions"
    REVIEW = "review"
    DOCUMENT = "document"


class ReasonCode(StrEnum):
    """Why a case moved: the `reason_code` of the case and of its outbox event."""

    PLAYER_NOT_FOUND = "player_not_found"
    DATE_OF_BIRTH_MISSING = "date_of_birth_missing"
    UNDER_AGE = "under_age"
    SANCTIONS_REVIEW = "sanctions_review"
    SANCTIONS_MATCH = "sanctions_match"
    DOCUMENT_RETRY = "document_retry"
    DOCUMENT_REJECTED = "document_rejected"
    DOCUMENT_ATTEMPTS_EXHAUSTED = "document_attempts_exhausted"
    DOCUMENT_NOT_SUBMITTED = "document_not_submitted"
    PROVIDER_TIMEOUT = "provider_timeout"


class KycRefusal(StrEnum):
    """Refusal codes (`Refusal.code`) of KYC requests and activities; HTTP statuses in
    api/problems.py STATUS_BY_CODE."""

    ALREADY_VERIFIED = "kyc_already_verified"
    REJECTED = "kyc_rejected"
    IN_PROGRESS = "kyc_in_progress"
    NOT_IN_REVIEW = "kyc_not_in_review"
    PROVIDER_REFUSED = "kyc_provider_refused"
    PLAYER_NOT_FOUND = "player_not_found"


class Event(StrEnum):
    """Outbox event types of a case (what partners hear)."""

    REVIEW_REQUIRED = "kyc.review_required"
    RESUBMISSION_REQUIRED = "kyc.resubmission_required"
    VERIFIED = "kyc.verified"
    REJECTED = "kyc.rejected"
    EXPIRED = "kyc.expired"


# Read-only: workflows share this module across runs (workers.main.workflow_runner).
FINAL_EVENT = MappingProxyType({KycState.VERIFIED: Event.VERIFIED,
                                KycState.REJECTED: Event.REJECTED,
                                KycState.EXPIRED: Event.EXPIRED})


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class DocumentResult(StrEnum):
    GREEN = "GREEN"
    RED = "RED"


class NextStep(StrEnum):
    """What a RED verdict asks for."""

    RETRY = "RETRY"
    FINAL = "FINAL"


class Activity(StrEnum):
    OPEN_CASE = "kyc.open_case"
    CHECK_AGE = "kyc.check_age"
    SCREEN_SANCTIONS = "kyc.screen_sanctions"
    SUBMIT_DOCUMENT = "kyc.submit_document"
    FETCH_VERDICT = "kyc.fetch_verdict"      # the check read back: a webhook missed
    ADVANCE = "kyc.advance"


class Signal(StrEnum):
    SUBMIT_DOCUMENT = "submit_document"      # a document from the player (signal-with-start)
    DOCUMENT_RESULT = "document_result"      # the provider's verified webhook
    REVIEW = "review"                        # runs started before Update.REVIEW existed only


class Update(StrEnum):
    REVIEW = "decide_review"                 # an operator's decision; refused unless in review


class Query(StrEnum):
    STATE = "state"


class Patch(StrEnum):
    """`workflow.patched` ids: behaviour changed under cases already running (workflows/kyc.py)."""

    REFERENCE_PER_RUN = "kyc-document-reference-per-run"
    REVIEW_RECORDED_BY_WORKFLOW = "kyc-review-recorded-by-workflow"
    VERDICT_POLLED = "kyc-verdict-polled"


# --- document references -------------------------------------------------------------------
def document_reference(workflow_id: str, run_id: str, attempt: int) -> str:
    """`kyc-<player>:<run id>:doc:<attempt>`: the check's reference and idempotency key."""
    return f"{workflow_id}:{run_id}:doc:{attempt}"


def legacy_document_reference(workflow_id: str, attempt: int) -> str:
    """The reference of runs started before Patch.REFERENCE_PER_RUN (the same for every run)."""
    return f"{workflow_id}:doc:{attempt}"


@dataclass(frozen=True)
class ReferenceOwner:
    workflow_id: str
    run_id: str | None          # None: a legacy reference (the workflow's current run)


def reference_owner(reference: str) -> ReferenceOwner | None:
    """The run a document reference belongs to; None when it is not a KYC reference (a run id
    that is not a run id Temporal makes, a canonical UUID, included: Temporal refuses it)."""
    head, separator, attempt = reference.rpartition(":doc:")
    if not separator or not attempt.isdigit() or not head.startswith(PREFIX):
        return None
    workflow, _, run_id = head.partition(":")
    if len(workflow) <= len(PREFIX) or (run_id and not _is_run_id(run_id)):
        return None
    return ReferenceOwner(workflow, run_id or None)


def _is_run_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# --- what the API, the workflow and the activities exchange --------------------------------
@dataclass
class KycDocument:
    type: str          # passport | driving_licence | id_card
    number: str
    country: str


@dataclass
class KycRequest:
    player_id: str
    actor: str                              # who asked (api_key:<id>), for the audit trail
    # From Settings, fixed at start so the workflow never reads configuration.
    document_timeout_seconds: float = 86_400.0
    max_document_attempts: int = 3
    # No verdict webhook for this long: ask the provider (again each interval, until the
    # document timeout), in case the webhook was lost.
    verdict_poll_seconds: float = 900.0
    # Off only where the Temporal server has no custom search attributes (the time-skipping
    # test server): operators find cases in Temporal UI through them.
    index_search_attributes: bool = True

    @property
    def workflow_id(self) -> str:
        return workflow_id(self.player_id)


@dataclass
class ReviewDecision:
    decision: Decision
    operator: str                           # operator:<name> or api_key:<id>
    note: str | None = None


@dataclass
class Verdict:
    """The provider's verdict on a check: a verified webhook (the signal to the run that sent
    the document), or the check read back from the provider (`polled`, Activity.FETCH_VERDICT).
    """

    event_id: str                           # the webhook's id; polled: `poll:<check id>`
    check_id: str
    reference: str
    result: DocumentResult
    next: NextStep | None = None            # RED only
    reason: str | None = None
    polled: bool = False                    # read back from the provider, not a webhook


@dataclass
class AgeCheck:
    passed: bool
    reason_code: ReasonCode | None = None
    reason: str | None = None


@dataclass
class Screening:
    score: float
    hit: bool
    matched_name: str | None = None
    list_reference: str | None = None


@dataclass
class DocumentSubmission:
    player_id: str
    reference: str                          # document_reference(): also the idempotency key
    attempt: int
    document: KycDocument


@dataclass
class CheckLookup:
    """Which check to read back: the provider's id, and the reference it was sent under (the
    check must be that document's)."""

    check_id: str
    reference: str


@dataclass
class Transition:
    """A state change of the case, as the workflow decided it."""

    player_id: str
    state: KycState
    step: Step
    reason_code: ReasonCode | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    event: Event | None = None              # outbox event type, when partners care
    actor: str | None = None                # default: the workflow; an operator's decision: them
    action: str | None = None               # audit action; default `kyc.<state>`


@dataclass
class KycResult:
    player_id: str
    state: KycState
    reason_code: ReasonCode | None = None
    reason: str | None = None
