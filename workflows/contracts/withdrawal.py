"""The withdrawal workflow's contract: what crosses its boundary, and the names it is known by.

The API starts `WORKFLOW` as `workflow_id(withdrawal id)`, submits second-factor codes with the
Update `Update.SUBMIT_SECOND_FACTOR`, cancels with `Update.CANCEL` and passes an operator's
decision with `Signal.REVIEW`; the worker registers the activities under `Activity` names; the
store, the API and the `WithdrawalState` search attribute spell states with `WithdrawalState`,
so each is written once. Refusal codes (`WithdrawalRefusal`) are mapped to HTTP statuses in
api/problems.py.

Idempotency keys come from the workflow id (`WithdrawalRequest.key`): ledger
`withdrawal-<id>:hold|post|clear|void|settle_debt`, gateway `withdrawal-<id>:refund:<n>|payout`,
notification `withdrawal-<id>:2fa-code`.
Must never: import anything with I/O (the workflow imports it directly).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

WORKFLOW = "Withdrawal"
PREFIX = "withdrawal-"

# Stripe forgets an idempotency key after 24 hours; a gateway step first sent longer ago than
# this looks for what it may already have created before it creates anything (a margin of an
# hour for clocks and queues).
GATEWAY_KEY_MEMORY_SECONDS = 23 * 3600.0
# A gateway step still failing after this long goes to an operator instead of being retried on.
GATEWAY_DEADLINE_SECONDS = 3600.0


def withdrawal_id_for(operation_id: str) -> str:
    """The withdrawal id of an API operation (API key + Idempotency-Key): a retried POST finds
    the same row and the same workflow."""
    return "wd_" + hashlib.sha256(operation_id.encode()).hexdigest()[:24]


def workflow_id(withdrawal_id: str) -> str:
    return f"{PREFIX}{withdrawal_id}"


class WithdrawalState(StrEnum):
    """A withdrawal's state: the withdrawals row, the API's `state`, the `WithdrawalState` search
    attribute (upper case there: `WithdrawalState = "PAYING"`). The stored value of the second
    factor's state stays `awaiting_2fa`: partners switch on it."""

    CHECKING = "checking"
    HELD = "held"
    AWAITING_SECOND_FACTOR = "awaiting_2fa"
    AWAITING_APPROVAL = "awaiting_approval"
    PAYING = "paying"
    PAYOUT_REVIEW = "payout_review"     # a gateway step passed its deadline: an operator decides
    PAID = "paid"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES

    @property
    def cancellable(self) -> bool:
        """The player may still cancel: the payout has not begun."""
        return self in (WithdrawalState.CHECKING, WithdrawalState.HELD,
                        WithdrawalState.AWAITING_SECOND_FACTOR, WithdrawalState.AWAITING_APPROVAL)

    @property
    def search_value(self) -> str:
        return self.value.upper()


FINAL_STATES = frozenset({WithdrawalState.PAID, WithdrawalState.CANCELLED,
                          WithdrawalState.REJECTED, WithdrawalState.FAILED})


class SecondFactorMethod(StrEnum):
    TOTP = "totp"          # the player's confirmed authenticator
    CODE = "code"          # a one-time code sent through the notification provider


class ReviewPending(StrEnum):
    """Values of the `ReviewPending` search attribute a withdrawal sets while it waits."""

    APPROVAL = "withdrawal_approval"     # above the approval threshold
    PAYOUT = "withdrawal_payout"         # a gateway step passed its deadline


class Decision(StrEnum):
    """An operator's decision. On an approval: pay or not. On a payout review: try the leg
    again (looking at the gateway first), or give it up as failed."""

    APPROVE = "approve"
    REJECT = "reject"


class LegMethod(StrEnum):
    REFUND = "refund"      # back to a deposit's payment (closed loop)
    PAYOUT = "payout"      # the rest, to the player's recorded bank account


class LegState(StrEnum):
    """A payout leg at the gateway (`pending` is never stored: the row stays `planned`)."""

    PLANNED = "planned"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"   # never sent: the withdrawal ended first (its amount is released)


class WithdrawalRefusal(StrEnum):
    """Refusal codes (`Refusal.code`) of withdrawal requests, activities and updates; HTTP
    statuses in api/problems.py STATUS_BY_CODE. Compliance gates add their own codes
    (kyc_not_verified, open_debt, ...)."""

    CURRENCY_NOT_SUPPORTED = "currency_not_supported"
    PAYOUT_DESTINATION_UNKNOWN = "payout_destination_unknown"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    OPEN_DEBT = "open_debt"
    HOLD_NOT_PENDING = "hold_not_pending"      # the hold was voided or posted: nothing to pay
    SECOND_FACTOR_MALFORMED = "second_factor_malformed"
    SECOND_FACTOR_INVALID = "second_factor_invalid"
    SECOND_FACTOR_FAILED = "second_factor_failed"
    SECOND_FACTOR_EXPIRED = "second_factor_expired"
    SECOND_FACTOR_NOT_EXPECTED = "second_factor_not_expected"
    CANCELLED_BY_PLAYER = "cancelled_by_player"
    REJECTED_BY_OPERATOR = "rejected_by_operator"
    PAYOUT_FAILED = "payout_failed"
    NOT_CANCELLABLE = "withdrawal_not_cancellable"
    FINISHED = "withdrawal_finished"
    NOT_AWAITING_REVIEW = "withdrawal_not_awaiting_approval"


class Event(StrEnum):
    """Outbox event types of a withdrawal (what partners hear)."""

    CREATED = "withdrawal.created"
    APPROVAL_REQUIRED = "withdrawal.approval_required"
    PAYOUT_REVIEW_REQUIRED = "withdrawal.payout_review_required"
    PAID = "withdrawal.paid"
    CANCELLED = "withdrawal.cancelled"
    REJECTED = "withdrawal.rejected"
    FAILED = "withdrawal.failed"


# Read-only: workflows share this module across runs (workers.main.workflow_runner).
FINAL_EVENT = MappingProxyType({WithdrawalState.PAID: Event.PAID,
                                WithdrawalState.CANCELLED: Event.CANCELLED,
                                WithdrawalState.REJECTED: Event.REJECTED,
                                WithdrawalState.FAILED: Event.FAILED})


class Activity(StrEnum):
    """The activities' registered names: the workflow calls them by these."""

    CHECK = "withdrawal.check"
    HOLD = "withdrawal.hold"
    START_SECOND_FACTOR = "withdrawal.start_second_factor"
    VERIFY_SECOND_FACTOR = "withdrawal.verify_second_factor"
    RECORD = "withdrawal.record"
    CHECK_DEBT = "withdrawal.check_debt"
    PLAN_PAYOUTS = "withdrawal.plan_payouts"
    SEND_PAYOUT = "withdrawal.send_payout"
    REFRESH_PAYOUT = "withdrawal.refresh_payout"
    COMPLETE = "withdrawal.complete"
    RELEASE = "withdrawal.release"


class Patch(StrEnum):
    """`workflow.patched` ids: behaviour changed under withdrawals already running
    (workflows/withdrawal.py). A withdrawal started before a patch replays the old branch."""

    DEBT_CHECKED_BEFORE_PAYOUT = "withdrawal-debt-checked-before-payout"
    REJECTION_RECORDED_BY_WORKFLOW = "withdrawal-rejection-recorded-by-workflow"


class Update(StrEnum):
    SUBMIT_SECOND_FACTOR = "submit_second_factor"
    CANCEL = "cancel"


class Signal(StrEnum):
    REVIEW = "review"


class Query(StrEnum):
    STATE = "state"


# --- what the workflow, the activities, the updates and the API exchange ----------------------

@dataclass
class WithdrawalRequest:
    withdrawal_id: str
    player_id: str
    partner_id: str
    amount: int                       # minor units
    currency: str
    actor: str                        # who asked (api_key:<id>), for the audit trail
    ip_address: str | None = None
    payout_destination: str | None = None   # one of the player's recorded bank accounts
    # From Settings, fixed at start so the workflow never reads configuration.
    second_factor_timeout_seconds: float = 600.0
    second_factor_max_attempts: int = 3
    approval_threshold: int = 500_000       # above this amount an operator must approve
    gateway_provider: str = "stripe"
    payout_poll_seconds: float = 5.0
    gateway_deadline_seconds: float = GATEWAY_DEADLINE_SECONDS
    # Off only where the Temporal server has no custom search attributes (time-skipping tests).
    index_search_attributes: bool = True

    @property
    def workflow_id(self) -> str:
        return workflow_id(self.withdrawal_id)

    def key(self, step: str) -> str:
        return f"{self.workflow_id}:{step}"


@dataclass
class Challenge:
    method: SecondFactorMethod
    sent_to: str | None = None        # where the one-time code went (code only)


@dataclass
class SecondFactorCode:
    code: str


@dataclass
class SecondFactorAttempt:
    withdrawal_id: str
    player_id: str
    method: SecondFactorMethod
    code: str
    attempts_left_if_wrong: int


@dataclass
class SecondFactorAnswer:
    verified: bool
    state: WithdrawalState
    attempts_left: int


@dataclass
class CancelRequest:
    actor: str
    reason: str | None = None


@dataclass
class ReviewDecision:
    decision: Decision
    operator: str
    note: str | None = None


@dataclass
class Step:
    """A state change the workflow decided (no money moves in it). `actor` None: the workflow."""
    withdrawal_id: str
    state: WithdrawalState
    step: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)
    event: Event | None = None
    actor: str | None = None


@dataclass
class PayoutLeg:
    withdrawal_id: str
    n: int
    method: LegMethod
    amount: int
    currency: str
    idempotency_key: str
    payment_ref: str | None = None    # refund: the deposit's payment intent
    destination: str | None = None    # payout: the bank account


@dataclass
class LegStatus:
    n: int
    state: LegState                   # pending | confirmed | failed
    gateway_ref: str | None = None
    failure: str | None = None


@dataclass
class Release:
    """End a withdrawal that did not (fully) pay: post what the gateway paid, return the rest.
    With `settle_debt`, the returned cash first repays the player's debt in its currency."""
    withdrawal_id: str
    state: WithdrawalState            # cancelled | rejected | failed
    reason_code: str
    reason: str
    actor: str
    held: bool = True                 # False: refused before anything was held
    paid_amount: int = 0
    gateway_provider: str = "stripe"
    settle_debt: bool = False


@dataclass
class WithdrawalResult:
    withdrawal_id: str
    state: WithdrawalState
    reason_code: str | None = None
    reason: str | None = None
    paid_amount: int = 0
