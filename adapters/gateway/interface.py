"""The payment gateway as the rest of settlepay sees it: typed results, named failures.

What a deposit, a refund, a payout and reconciliation need from a card processor, and nothing
vendor-specific: amounts are integers in minor units, currencies are upper-case ISO codes,
statuses are the gateway's own words (Stripe's), and every call that creates something takes
an idempotency key the caller derives from its business operation (workflow id + step).

Failures come in three kinds so that activities can translate them without knowing the vendor:
  - `GatewayDeclined`: the issuer or the gateway said no (card declined, refund refused). A
    business outcome: retrying the same request gives the same answer.
  - `GatewayInvalidRequest`: we asked for something impossible (bad parameter, unknown object,
    an idempotency key reused with different parameters). Retrying cannot help.
  - `GatewayUnavailable`: 5xx, 429, timeouts, connection errors. Retrying with the same
    idempotency key is safe and is what Temporal does.

This module must never import a vendor SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# PaymentIntent statuses (Stripe's vocabulary) grouped by what a deposit does next.
SUCCEEDED = "succeeded"
PROCESSING = "processing"
REQUIRES_ACTION = "requires_action"
REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # after a decline or a failed 3DS
CANCELED = "canceled"
TERMINAL_STATUSES = frozenset({SUCCEEDED, CANCELED})


@dataclass(frozen=True)
class NextAction:
    """What the customer must do before the payment can go on (3-D Secure)."""
    type: str                      # "redirect_to_url" or "use_stripe_sdk"
    redirect_url: str | None = None
    return_url: str | None = None


@dataclass(frozen=True)
class PaymentError:
    """Why the last attempt at a payment failed (Stripe's `last_payment_error`)."""
    code: str | None
    decline_code: str | None
    message: str | None


@dataclass(frozen=True)
class PaymentIntent:
    id: str
    status: str
    amount: int
    currency: str                  # upper case
    payment_method: str | None
    latest_charge: str | None
    client_secret: str | None = None
    next_action: NextAction | None = None
    last_payment_error: PaymentError | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def failed(self) -> bool:
        """Declined or authentication failed: the intent fell back to needing a payment method."""
        return self.status == REQUIRES_PAYMENT_METHOD and self.last_payment_error is not None


@dataclass(frozen=True)
class Refund:
    id: str
    status: str                    # pending, succeeded, failed, canceled, requires_action
    amount: int
    currency: str
    payment_intent: str | None
    charge: str | None
    failure_reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created: int | None = None


@dataclass(frozen=True)
class Payout:
    id: str
    status: str                    # pending, in_transit, paid, failed, canceled
    amount: int
    currency: str
    destination: str | None
    arrival_date: int | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created: int | None = None


@dataclass(frozen=True)
class BalanceTransaction:
    """One movement on the gateway balance: what reconciliation matches against the ledger."""
    id: str
    type: str                      # charge, refund, payout, payment_failure_refund, ...
    amount: int                    # gross, signed: + charge, - refund/payout
    fee: int
    net: int
    currency: str
    source: str | None             # ch_..., re_..., po_...
    created: int
    reporting_category: str | None = None


@dataclass(frozen=True)
class Dispute:
    """A cardholder's dispute (chargeback) of a charge."""
    id: str
    status: str                    # needs_response, under_review, won, lost, ...
    amount: int
    currency: str
    charge: str | None
    payment_intent: str | None
    reason: str | None
    created: int
    fee: int = 0                   # the dispute fee the gateway took with the amount


@dataclass(frozen=True)
class BalanceTransactionPage:
    items: list[BalanceTransaction]
    has_more: bool


@dataclass(frozen=True)
class WebhookEvent:
    """A verified gateway event (signature checked on the raw body)."""
    id: str
    type: str
    created: int
    object: dict[str, Any]         # the snapshot in data.object, as the gateway sent it
    # The idempotency key of our API request that caused the event (None for events the
    # gateway raised on its own: async settlement, the customer finishing 3-D Secure).
    request_idempotency_key: str | None = None

    @property
    def object_id(self) -> str | None:
        return self.object.get("id")

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.object.get("metadata") or {})


class GatewayError(Exception):
    """Base of the gateway failures. `code` is the gateway's error code when it gave one."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.request_id = request_id


class GatewayDeclined(GatewayError):
    """The payment (or refund/payout) was refused: a business outcome, never retried."""

    def __init__(self, message: str, *, code: str | None = None, decline_code: str | None = None,
                 payment_intent: PaymentIntent | None = None, http_status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message, code=code, http_status=http_status, request_id=request_id)
        self.decline_code = decline_code
        self.payment_intent = payment_intent

    @property
    def reason(self) -> str:
        """The most specific reason we have: decline code, else error code."""
        return self.decline_code or self.code or "declined"


class GatewayInvalidRequest(GatewayError):
    """We sent something the gateway cannot do; retrying the same request cannot help."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 http_status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message, code=code, http_status=http_status, request_id=request_id)
        self.param = param


class GatewayUnavailable(GatewayError):
    """5xx, rate limit, timeout or connection failure: retry with the same idempotency key."""


class WebhookSignatureInvalid(Exception):
    """A webhook whose signature is missing, wrong, or older than the tolerance."""


class PaymentGateway(Protocol):
    """A card processor. Every create takes the caller's idempotency key (required)."""

    provider: str                  # ledger clearing account name: gateway:<provider>

    # --- deposits: payment intents -------------------------------------------------------
    def create_payment_intent(self, *, amount: int, currency: str, payment_method: str,
                              idempotency_key: str, confirm: bool = True,
                              return_url: str | None = None, customer: str | None = None,
                              metadata: dict[str, str] | None = None,
                              description: str | None = None) -> PaymentIntent: ...

    def confirm_payment_intent(self, intent_id: str, *, idempotency_key: str,
                               return_url: str | None = None) -> PaymentIntent: ...

    def retrieve_payment_intent(self, intent_id: str) -> PaymentIntent: ...

    def cancel_payment_intent(self, intent_id: str, *, idempotency_key: str,
                              reason: str | None = None) -> PaymentIntent: ...

    # --- money back out: refunds (closed loop first) and payouts ---------------------------
    def create_refund(self, *, payment_intent: str, idempotency_key: str,
                      amount: int | None = None, reason: str | None = None,
                      metadata: dict[str, str] | None = None) -> Refund: ...

    def retrieve_refund(self, refund_id: str) -> Refund: ...

    def create_payout(self, *, amount: int, currency: str, idempotency_key: str,
                      destination: str | None = None, description: str | None = None,
                      metadata: dict[str, str] | None = None) -> Payout: ...

    def retrieve_payout(self, payout_id: str) -> Payout: ...

    # --- reconciliation ------------------------------------------------------------------
    def list_balance_transactions(self, *, created_gte: int | None = None,
                                  created_lt: int | None = None, limit: int = 100,
                                  starting_after: str | None = None,
                                  type: str | None = None) -> BalanceTransactionPage: ...

    # Every object created in [created_gte, created_lt) (unix seconds), all pages, newest first.
    def list_payment_intents(self, *, created_gte: int | None = None,
                             created_lt: int | None = None) -> Iterator[PaymentIntent]: ...

    def list_refunds(self, *, created_gte: int | None = None,
                     created_lt: int | None = None) -> Iterator[Refund]: ...

    def list_payouts(self, *, created_gte: int | None = None,
                     created_lt: int | None = None) -> Iterator[Payout]: ...

    def list_disputes(self, *, created_gte: int | None = None,
                      created_lt: int | None = None) -> Iterator[Dispute]: ...

    def iter_balance_transactions(self, *, created_gte: int | None = None,
                                  created_lt: int | None = None
                                  ) -> Iterator[BalanceTransaction]: ...

    # --- webhooks ------------------------------------------------------------------------
    def verify_webhook(self, payload: bytes, signature_header: str | None,
                       tolerance_seconds: int = 300) -> WebhookEvent: ...
