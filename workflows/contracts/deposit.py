"""The deposit workflow's contract: what crosses its boundary, and the names it is known by.

The API starts `WORKFLOW` as `workflow_id(deposit id)` with a `DepositRequest`; the webhook
route signals `PAYMENT_EVENT_SIGNAL` with a `PaymentEvent`; the worker registers the activities
under the `Activity` names; the deposits table, the API and the `PaymentState` search attribute
spell a deposit's state with `DepositStatus` (upper case in Temporal UI:
`PaymentState = "FAILED"`), so each state is written once.

Idempotency keys come from the workflow id: gateway `deposit-<id>:create|cancel`, ledger
`deposit-<id>:credit` (the same key whether the workflow credits or the webhook route credits a
payment that succeeded after the deposit closed).
Must never: import anything with I/O (the workflow imports it directly).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

WORKFLOW = "Deposit"
PAYMENT_EVENT_SIGNAL = "payment_event"
STATE_QUERY = "state"

# A gateway step (create, cancel) still failing after this long stops retrying and the deposit
# goes to an operator: Stripe forgets an idempotency key after 24 hours, so the same key must
# never be retried that long (issue 9, item 12).
GATEWAY_DEADLINE_SECONDS = 3600.0


def deposit_id_for(operation_id: str) -> str:
    """The deposit id of an API operation (API key + Idempotency-Key): a retried POST, even after
    a crash, finds the same deposit row and the same workflow instead of making a second one."""
    return "dep_" + hashlib.sha256(operation_id.encode()).hexdigest()[:24]


def workflow_id(deposit_id: str) -> str:
    return f"deposit-{deposit_id}"


class DepositStatus(StrEnum):
    """A deposit's state: the deposits row, the API's `status`, the `PaymentState` search
    attribute (`search_value`, upper case there)."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"     # the player must authenticate (3-D Secure)
    PROCESSING = "processing"               # the gateway has the payment; its verdict is due
    REVIEW = "review"                       # no verdict in time: an operator looks at it
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def search_value(self) -> str:
        return self.value.upper()


FINAL_STATUSES = frozenset({DepositStatus.SUCCEEDED, DepositStatus.FAILED})


class DepositFailure(StrEnum):
    """The deposit's own failure codes (a gate refusal keeps the gate's code, a decline the
    gateway's decline code)."""

    PAYMENT_FAILED = "payment_failed"                 # the gateway's verdict named no code
    EXPIRED = "expired"                               # the payment was cancelled at the timeout
    PAYMENT_METHOD_INVALID = "payment_method_invalid"
    GATEWAY_REJECTED_REQUEST = "gateway_rejected_request"
    CLOSED_IN_REVIEW = "closed_in_review"             # an operator closed it (no money moved)


class DepositRefusal(StrEnum):
    """Refusals of a deposit command (answered by api/problems.py STATUS_BY_CODE)."""

    DEPOSIT_NOT_FOUND = "deposit_not_found"
    DEPOSIT_ALREADY_FAILED = "deposit_already_failed"
    DEPOSIT_NOT_IN_REVIEW = "deposit_not_in_review"


class ReviewReason(StrEnum):
    """Why a deposit waits for an operator."""

    GATEWAY_UNREACHABLE = "gateway_unreachable"   # a gateway step passed its deadline
    STILL_PROCESSING = "still_processing"         # no verdict within the processing limit


class Activity(StrEnum):
    CHECK_GATES = "deposit.check_gates"
    CREATE_PAYMENT = "deposit.create_payment"
    RETRIEVE_PAYMENT = "deposit.retrieve_payment"
    CANCEL_PAYMENT = "deposit.cancel_payment"
    CREDIT_PLAYER = "deposit.credit_player"
    FAIL = "deposit.fail"
    REVIEW = "deposit.review"


class Patch(StrEnum):
    """`workflow.patched` ids of changes to running deposits (workflows/PATCHING.md)."""

    # At the timeout a payment the gateway refuses to cancel (processing) keeps the deposit open
    # until the processing limit, then goes to review; before, the deposit failed `expired`
    # while the payment could still succeed (issue 9, item 5).
    PROCESSING_STAYS_OPEN = "deposit-processing-stays-open"
    # The database steps (gate, credit, fail, review) are local activities: no activity task
    # through the server for a short write (issue 16); before, they were activities.
    LOCAL_DATABASE_STEPS = "deposit-local-database-steps"


class GatewayStatus(StrEnum):
    """The PaymentIntent statuses the workflow acts on (Stripe's names)."""

    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"   # with an error: the attempt failed
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"


@dataclass
class DepositRequest:
    deposit_id: str
    player_id: str
    partner_id: str
    amount: int                   # minor units
    currency: str
    payment_method: str
    actor: str                    # who asked (api_key:<id>), for the audit trail
    ip_address: str | None = None
    return_url: str | None = None
    # Timings from Settings, fixed at start so the workflow never reads configuration.
    webhook_wait_seconds: float = 30.0
    poll_interval_seconds: float = 10.0
    timeout_seconds: float = 1800.0
    # A payment the gateway cannot cancel (processing) keeps the deposit open this long
    # (counted, like the timeout, from the start of the wait); then an operator reviews it.
    processing_limit_seconds: float = 259_200.0
    gateway_deadline_seconds: float = GATEWAY_DEADLINE_SECONDS

    @property
    def workflow_id(self) -> str:
        return workflow_id(self.deposit_id)

    @property
    def workflow_actor(self) -> str:
        """The audit actor of the workflow's own steps."""
        return f"workflow:{self.workflow_id}"


@dataclass
class Payment:
    """Where the gateway says a payment is (from an API answer or a webhook)."""

    payment_intent: str
    status: str                   # a Stripe PaymentIntent status (`GatewayStatus`)
    charge: str | None = None
    next_action: dict[str, Any] | None = None
    failure_code: str | None = None
    failure_reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == GatewayStatus.SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.status == GatewayStatus.CANCELED or (
            self.status == GatewayStatus.REQUIRES_PAYMENT_METHOD and self.failure_code is not None)

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


@dataclass
class PaymentEvent:
    """A verified gateway webhook, as a signal to the deposit's workflow."""

    event_id: str
    event_type: str
    payment: Payment


@dataclass
class Credit:
    deposit_id: str
    player_id: str
    amount: int
    currency: str
    payment_intent: str
    charge: str | None


@dataclass
class Failure:
    deposit_id: str
    code: str
    reason: str
    payment_intent: str | None = None


@dataclass
class Review:
    """The deposit goes to an operator: no verdict from the gateway in time."""

    deposit_id: str
    code: ReviewReason
    reason: str
    payment_intent: str | None = None


@dataclass
class DepositResult:
    deposit_id: str
    status: DepositStatus
    failure_code: str | None = None
    failure_reason: str | None = None
    payment_intent: str | None = None
    ledger_transaction_id: int | None = None
    review_code: str | None = None
    review_reason: str | None = None
