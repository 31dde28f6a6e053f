"""Payment gateways: the `PaymentGateway` interface and its Stripe adapter.

Import the interface from here; build the adapter with `from_settings(settings)`
(the only place the Stripe SDK is loaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.gateway.interface import (
    BalanceTransaction,
    BalanceTransactionPage,
    Dispute,
    GatewayDeclined,
    GatewayError,
    GatewayInvalidRequest,
    GatewayUnavailable,
    NextAction,
    PaymentError,
    PaymentGateway,
    PaymentIntent,
    Payout,
    Refund,
    WebhookEvent,
    WebhookSignatureInvalid,
)

if TYPE_CHECKING:
    from settlepay.config import Settings

__all__ = [
    "BalanceTransaction", "BalanceTransactionPage", "Dispute", "GatewayDeclined", "GatewayError",
    "GatewayInvalidRequest", "GatewayUnavailable", "NextAction", "PaymentError", "PaymentGateway",
    "PaymentIntent", "Payout", "Refund", "WebhookEvent", "WebhookSignatureInvalid",
]


def from_settings(settings: Settings) -> PaymentGateway:
    """The configured gateway (Stripe, or a Stripe-compatible sandbox at `stripe_api_base`).
    The Stripe SDK is loaded only when this is called."""
    from adapters.gateway.stripe_gateway import StripeGateway
    return StripeGateway.from_settings(settings)
