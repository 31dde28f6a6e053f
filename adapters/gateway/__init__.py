"""Payment gateways: the `PaymentGateway` interface and its Stripe adapter.

Import the interface from here; build the adapter with `from_settings(settings)`
(the only place the Stripe SDK is loaded).
"""

from adapters.gateway.interface import (
    BalanceTransaction,
    BalanceTransactionPage,
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

__all__ = [
    "BalanceTransaction", "BalanceTransactionPage", "GatewayDeclined", "GatewayError",
    "GatewayInvalidRequest", "GatewayUnavailable", "NextAction", "PaymentError", "PaymentGateway",
    "PaymentIntent", "Payout", "Refund", "WebhookEvent", "WebhookSignatureInvalid",
]


def from_settings(settings):  # noqa: ANN001, ANN201 - loads the Stripe SDK only when called
    """The configured gateway (Stripe, or a Stripe-compatible sandbox at `stripe_api_base`)."""
    from adapters.gateway.stripe_gateway import StripeGateway
    return StripeGateway.from_settings(settings)
