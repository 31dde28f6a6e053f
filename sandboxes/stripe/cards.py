"""Stripe's test cards: what each card number / payment method token does in the sandbox.

Numbers and `pm_card_*` tokens are the ones documented at https://docs.stripe.com/testing.
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCEED = "succeed"
DECLINE = "decline"
AUTHENTICATE = "authenticate"  # 3-D Secure required on every payment


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str
    outcome: str
    decline_code: str | None = None      # for DECLINE
    refund_fails: bool = False           # refunds go pending, then fail (4000000000005126)


CARDS: dict[str, TestCard] = {c.number: c for c in (
    TestCard("4242424242424242", "visa", SUCCEED),
    TestCard("5555555555554444", "mastercard", SUCCEED),
    TestCard("4000000000000002", "visa", DECLINE, "generic_decline"),
    TestCard("4000000000009995", "visa", DECLINE, "insufficient_funds"),
    TestCard("4000000000009987", "visa", DECLINE, "lost_card"),
    TestCard("4000000000000069", "visa", DECLINE, "expired_card"),
    TestCard("4000000000000341", "visa", DECLINE, "generic_decline"),   # attaches, charges fail
    TestCard("4000002500003155", "visa", AUTHENTICATE),
    TestCard("4000002760003184", "visa", AUTHENTICATE),
    TestCard("4000000000005126", "visa", SUCCEED, refund_fails=True),
)}

TOKENS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_authenticationRequired": "4000002500003155",
    "pm_card_threeDSecure2Required": "4000002760003184",
    "pm_card_refundFail": "4000000000005126",
}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
}


def card_for(number: str) -> TestCard:
    # Any other well-formed number behaves like a plain successful Visa, as in Stripe test mode.
    return CARDS.get(number, TestCard(number, "visa", SUCCEED))
