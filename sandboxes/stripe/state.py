"""The sandbox's in-memory Stripe account: payment methods, payment intents, charges, refunds,
payouts, balance transactions and events, with Stripe's state machines and test cards.

Objects are plain dicts in Stripe's JSON shape. Every change that Stripe would announce emits an
event (kept for GET /v1/events and handed to the webhook dispatcher). Runs on one event loop:
no locks, and no awaits in the middle of a change.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from sandboxes.stripe import cards, forms
from sandboxes.stripe.errors import StripeApiError, invalid, missing
from sandboxes.stripe.faults import Faults

API_VERSION = "2024-06-20"
_ALPHABET = string.ascii_letters + string.digits

# Stripe cancels a card payment only before it is processing: once the card network has it,
# the cancel is refused (400 payment_intent_unexpected_state) and the payment finishes on its own.
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
              "requires_action")


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


# Stripe's fee for a dispute, taken with the disputed amount (in the charge's currency).
DISPUTE_FEE = 1500
# balance transaction type -> Stripe's reporting category
_CATEGORY = {"payment_failure_refund": "refund_failure", "refund_failure": "refund_failure",
             "payout_failure": "payout_reversal"}


def fee_for(amount: int) -> int:
    """Stripe's standard card pricing, 2.9% + 30, rounded half up, in integer arithmetic."""
    return (amount * 29 + 500) // 1000 + 30


class Account:
    def __init__(self, faults: Faults, emit: Callable[[dict[str, Any]], None],
                 base_url: Callable[[], str]) -> None:
        self.faults = faults
        self._emit = emit
        self._base_url = base_url
        self.payment_methods: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.payouts: dict[str, dict] = {}
        self.balance_transactions: dict[str, dict] = {}
        self.disputes: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.payout_settle_seconds = 0.05
        self.refund_fail_seconds = 0.05
        self.fee_override: int | None = None   # test control: the next charges' fee
        self.request_context: dict[str, Any] = {}

    # --- events ---------------------------------------------------------------------------
    def emit(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": new_id("evt_"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": type_,
            "data": {"object": _snapshot(obj)},
            "request": {"id": self.request_context.get("request_id"),
                        "idempotency_key": self.request_context.get("idempotency_key")},
        }
        self.events[event["id"]] = event
        self._emit(event)
        return event

    # --- payment methods ------------------------------------------------------------------
    def create_payment_method(self, params: dict[str, Any]) -> dict:
        forms.reject_unknown(params, {"type", "card", "metadata", "billing_details"})
        if params.get("type") != "card":
            raise invalid("Invalid type: only card is supported by the sandbox", param="type")
        card = params.get("card") or {}
        number = str(card.get("number") or "").replace(" ", "")
        token = card.get("token")
        if token:
            number = cards.TOKENS.get(token, "")
        if not number.isdigit() or not 12 <= len(number) <= 19:
            raise StripeApiError(402, "card_error", "Your card number is incorrect.",
                                 code="incorrect_number", param="card[number]")
        return self._payment_method(number, forms.metadata(params))

    def _payment_method(self, number: str, metadata: dict[str, str] | None = None) -> dict:
        card = cards.card_for(number)
        pm = {"id": new_id("pm_"), "object": "payment_method", "type": "card",
              "created": int(time.time()), "customer": None, "livemode": False,
              "metadata": metadata or {},
              "card": {"brand": card.brand, "last4": number[-4:], "exp_month": 12, "exp_year": 2034,
                       "country": "US", "funding": "credit", "_number": number}}
        self.payment_methods[pm["id"]] = pm
        return pm

    def resolve_payment_method(self, ref: str, param: str = "payment_method") -> dict:
        """`pm_card_visa`-style test tokens become a new payment method, as in Stripe."""
        if ref in cards.TOKENS:
            return self._payment_method(cards.TOKENS[ref])
        pm = self.payment_methods.get(ref)
        if pm is None:
            raise missing("PaymentMethod", ref, param)
        return pm

    # --- payment intents ------------------------------------------------------------------
    def create_payment_intent(self, params: dict[str, Any]) -> dict:
        forms.reject_unknown(params, {"amount", "currency", "payment_method",
                                      "payment_method_types", "confirm", "return_url", "metadata",
                                      "description", "customer", "capture_method",
                                      "automatic_payment_methods", "statement_descriptor",
                                      "receipt_email", "off_session"})
        amount = forms.integer(params, "amount", required=True, minimum=1)
        currency = forms.currency(params)
        if amount < 50:
            raise invalid("Amount must be at least 50 cents", code="amount_too_small",
                          param="amount")
        if amount > 99_999_999:
            raise invalid("Amount must be no more than 999,999.99", code="amount_too_large",
                          param="amount")
        if params.get("capture_method") not in (None, "automatic", "automatic_async"):
            raise invalid("The sandbox supports automatic capture only", param="capture_method")
        pm_ref = forms.string(params, "payment_method")
        pm = self.resolve_payment_method(pm_ref) if pm_ref else None
        now = int(time.time())
        pi_id = new_id("pi_")
        pi = {
            "id": pi_id, "object": "payment_intent", "amount": amount, "amount_received": 0,
            "currency": currency,
            "status": "requires_confirmation" if pm else "requires_payment_method",
            "payment_method": pm["id"] if pm else None, "payment_method_types": ["card"],
            "client_secret": f"{pi_id}_secret_{secrets.token_hex(12)}", "created": now,
            "capture_method": "automatic", "confirmation_method": "automatic",
            "customer": forms.string(params, "customer"),
            "description": forms.string(params, "description"),
            "metadata": forms.metadata(params), "latest_charge": None, "last_payment_error": None,
            "next_action": None, "canceled_at": None, "cancellation_reason": None,
            "livemode": False,
            "return_url": forms.string(params, "return_url"), "_authenticated": False,
        }
        self.payment_intents[pi_id] = pi
        self.emit("payment_intent.created", pi)
        if forms.boolean(params, "confirm"):
            self._confirm(pi)
        return pi

    def get_payment_intent(self, pi_id: str) -> dict:
        pi = self.payment_intents.get(pi_id)
        if pi is None:
            raise missing("payment_intent", pi_id, "intent")
        return pi

    def confirm_payment_intent(self, pi_id: str, params: dict[str, Any]) -> dict:
        forms.reject_unknown(params, {"payment_method", "return_url", "off_session"})
        pi = self.get_payment_intent(pi_id)
        if pi["status"] not in ("requires_confirmation", "requires_payment_method",
                                "requires_action"):
            raise _unexpected_state(pi, "confirm")
        if params.get("payment_method"):
            pi["payment_method"] = self.resolve_payment_method(params["payment_method"])["id"]
            pi["_authenticated"] = False
        if not pi["payment_method"]:
            raise invalid("You cannot confirm this PaymentIntent because it's missing a payment "
                          "method.", code="payment_intent_unexpected_state",
                          param="payment_method")
        if params.get("return_url"):
            pi["return_url"] = params["return_url"]
        self._confirm(pi)
        return pi

    def cancel_payment_intent(self, pi_id: str, params: dict[str, Any]) -> dict:
        forms.reject_unknown(params, {"cancellation_reason"})
        pi = self.get_payment_intent(pi_id)
        if pi["status"] not in CANCELABLE:
            raise invalid(f"You cannot cancel this PaymentIntent because it has a status of "
                          f"{pi['status']}. Only a PaymentIntent with one of the following "
                          f"statuses may be canceled: {', '.join(CANCELABLE)}.",
                          code="payment_intent_unexpected_state", payment_intent=_snapshot(pi))
        pi.update(status="canceled", canceled_at=int(time.time()), next_action=None,
                  cancellation_reason=params.get("cancellation_reason"))
        self.emit("payment_intent.canceled", pi)
        return pi

    def authenticate(self, pi_id: str, succeed: bool) -> dict:
        """The customer completes (or fails) the 3-D Secure challenge."""
        pi = self.get_payment_intent(pi_id)
        if pi["status"] != "requires_action":
            raise _unexpected_state(pi, "authenticate")
        pi["next_action"] = None
        if succeed:
            pi["_authenticated"] = True
            pi["status"] = "requires_confirmation"
            self._confirm(pi, raise_decline=False)
        else:
            pi.update(status="requires_payment_method", last_payment_error={
                "type": "invalid_request_error", "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication. You can provide "
                           "payment_method_data or a new PaymentMethod to attempt to fulfill this "
                           "PaymentIntent again.",
                "payment_method": {"id": pi["payment_method"]}})
            self.emit("payment_intent.payment_failed", pi)
        return pi

    def _confirm(self, pi: dict, raise_decline: bool = True) -> None:
        pm = self.payment_methods[pi["payment_method"]]
        card = cards.card_for(pm["card"]["_number"])
        pi["last_payment_error"] = None
        if card.outcome == cards.AUTHENTICATE and not pi["_authenticated"]:
            url = f"{self._base_url()}/_sandbox/3ds/{pi['id']}?client_secret={pi['client_secret']}"
            pi.update(status="requires_action", next_action={
                "type": "redirect_to_url",
                "redirect_to_url": {"url": url, "return_url": pi.get("return_url")}})
            self.emit("payment_intent.requires_action", pi)
            return
        if card.outcome == cards.DECLINE:
            charge = self._charge(pi, pm, status="failed", decline_code=card.decline_code)
            code = "expired_card" if card.decline_code == "expired_card" else "card_declined"
            message = cards.DECLINE_MESSAGES.get(card.decline_code or "", "Your card was declined.")
            error = {"type": "card_error", "code": code, "decline_code": card.decline_code,
                     "message": message, "charge": charge["id"],
                     "payment_method": _snapshot(pm)}
            pi.update(status="requires_payment_method", last_payment_error=error,
                      latest_charge=charge["id"])
            self.emit("charge.failed", charge)
            self.emit("payment_intent.payment_failed", pi)
            if raise_decline:
                raise StripeApiError(402, "card_error", message, code=code,
                                     decline_code=card.decline_code,
                                     charge=charge["id"], payment_intent=_snapshot(pi),
                                     payment_method=_snapshot(pm))
            return
        if self.faults.async_settle_ms > 0:
            pi["status"] = "processing"
            self.emit("payment_intent.processing", pi)
            loop = asyncio.get_running_loop()
            loop.call_later(self.faults.async_settle_ms / 1000, self._settle, pi["id"])
            return
        self._settle(pi["id"])

    def _settle(self, pi_id: str) -> None:
        pi = self.payment_intents[pi_id]
        if pi["status"] not in ("processing", "requires_confirmation"):
            return  # canceled meanwhile
        pm = self.payment_methods[pi["payment_method"]]
        charge = self._charge(pi, pm, status="succeeded")
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=charge["id"])
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", pi)

    def _charge(self, pi: dict, pm: dict, *, status: str, decline_code: str | None = None) -> dict:
        charge = {
            "id": new_id("ch_"), "object": "charge", "amount": pi["amount"], "amount_refunded": 0,
            "amount_captured": pi["amount"] if status == "succeeded" else 0,
            "currency": pi["currency"], "status": status, "paid": status == "succeeded",
            "captured": status == "succeeded", "refunded": False, "payment_intent": pi["id"],
            "payment_method": pm["id"], "created": int(time.time()),
            "metadata": dict(pi["metadata"]),
            "failure_code": "card_declined" if status == "failed" else None,
            "failure_message": "Your card was declined." if status == "failed" else None,
            "outcome": {"type": "authorized" if status == "succeeded" else "issuer_declined",
                        "reason": decline_code}, "balance_transaction": None, "livemode": False,
        }
        if status == "succeeded":
            fee = fee_for(pi["amount"]) if self.fee_override is None else self.fee_override
            txn = self._balance_transaction("charge", pi["amount"], pi["currency"], charge["id"],
                                            fee=fee)
            charge["balance_transaction"] = txn["id"]
        self.charges[charge["id"]] = charge
        return charge

    # --- refunds --------------------------------------------------------------------------
    def create_refund(self, params: dict[str, Any]) -> dict:
        forms.reject_unknown(params, {"payment_intent", "charge", "amount", "reason", "metadata",
                                      "instructions_email"})
        charge = self._refundable_charge(params)
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = forms.integer(params, "amount", minimum=1)
        amount = remaining if amount is None else amount
        if remaining == 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.",
                          code="charge_already_refunded", param="amount")
        if amount > remaining:
            raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                          f"({remaining})", code="amount_too_large", param="amount")
        reason = params.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise invalid(f"Invalid reason: {reason}", param="reason")
        pm = self.payment_methods[charge["payment_method"]]
        fails = cards.card_for(pm["card"]["_number"]).refund_fails
        refund = {
            "id": new_id("re_"), "object": "refund", "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"], "payment_intent": charge["payment_intent"], "reason": reason,
            "status": "pending" if fails else "succeeded", "failure_reason": None,
            "metadata": forms.metadata(params), "created": int(time.time()),
            "balance_transaction": None,
        }
        txn = self._balance_transaction("refund", -amount, charge["currency"], refund["id"])
        refund["balance_transaction"] = txn["id"]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.refunds[refund["id"]] = refund
        self.emit("refund.created", refund)
        self.emit("charge.refunded", charge)
        if fails:
            asyncio.get_running_loop().call_later(self.refund_fail_seconds, self._fail_refund,
                                                  refund["id"])
        return refund

    def _refundable_charge(self, params: dict[str, Any]) -> dict:
        if params.get("payment_intent"):
            pi = self.get_payment_intent(params["payment_intent"])
            if pi["status"] != "succeeded" or not pi["latest_charge"]:
                raise invalid(f"This PaymentIntent ({pi['id']}) does not have a successful charge "
                              "to refund.", code="charge_not_refundable", param="payment_intent")
            return self.charges[pi["latest_charge"]]
        if params.get("charge"):
            charge = self.charges.get(params["charge"])
            if charge is None:
                raise missing("charge", params["charge"], "charge")
            if charge["status"] != "succeeded":
                raise invalid("Cannot refund a failed payment.", code="charge_not_refundable",
                              param="charge")
            return charge
        raise invalid("One of the following params should be provided for this request: "
                      "payment_intent or charge.", code="parameter_missing")

    def _fail_refund(self, refund_id: str) -> None:
        refund = self.refunds[refund_id]
        charge = self.charges[refund["charge"]]
        refund.update(status="failed", failure_reason="expired_or_canceled_card")
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        self._balance_transaction("refund_failure", refund["amount"], refund["currency"],
                                  refund["id"])
        self.emit("refund.failed", refund)

    def get_refund(self, refund_id: str) -> dict:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise missing("refund", refund_id)
        return refund

    # --- payouts --------------------------------------------------------------------------
    def create_payout(self, params: dict[str, Any]) -> dict:
        forms.reject_unknown(params, {"amount", "currency", "destination", "description",
                                      "metadata",
                                      "method", "statement_descriptor", "source_type"})
        amount = forms.integer(params, "amount", required=True, minimum=1)
        currency = forms.currency(params)
        destination = forms.string(params, "destination") or "ba_sandbox_default"
        now = int(time.time())
        payout = {
            "id": new_id("po_"), "object": "payout", "amount": amount, "currency": currency,
            "destination": destination, "description": forms.string(params, "description"),
            "metadata": forms.metadata(params), "method": params.get("method") or "standard",
            "status": "pending", "arrival_date": now + 2 * 86400, "created": now,
            "automatic": False,
            "failure_code": None, "failure_message": None, "balance_transaction": None,
        }
        txn = self._balance_transaction("payout", -amount, currency, payout["id"])
        payout["balance_transaction"] = txn["id"]
        self.payouts[payout["id"]] = payout
        self.emit("payout.created", payout)
        # Destinations whose name says "fail" fail, like Stripe's failing test bank accounts.
        fails = "fail" in destination
        asyncio.get_running_loop().call_later(self.payout_settle_seconds, self.settle_payout,
                                              payout["id"], not fails)
        return payout

    def settle_payout(self, payout_id: str, paid: bool = True) -> dict:
        payout = self.get_payout(payout_id)
        if payout["status"] not in ("pending", "in_transit"):
            return payout
        if paid:
            payout["status"] = "paid"
            self.emit("payout.paid", payout)
        else:
            payout.update(status="failed", failure_code="account_closed",
                          failure_message="The bank account has been closed.")
            self._balance_transaction("payout_failure", payout["amount"], payout["currency"],
                                      payout["id"])
            self.emit("payout.failed", payout)
        return payout

    def get_payout(self, payout_id: str) -> dict:
        payout = self.payouts.get(payout_id)
        if payout is None:
            raise missing("payout", payout_id)
        return payout

    # --- disputes -------------------------------------------------------------------------
    def open_dispute(self, charge_id: str, reason: str = "fraudulent") -> dict:
        """The cardholder disputes a charge (test control): Stripe takes the amount and its
        dispute fee from the balance at once (one `adjustment` balance transaction) and emits
        `charge.dispute.created`."""
        charge = self.charges.get(charge_id)
        if charge is None:
            raise missing("charge", charge_id, "charge")
        if charge["status"] != "succeeded":
            raise invalid("Only a succeeded charge can be disputed.", param="charge")
        if charge.get("disputed"):
            raise invalid(f"Charge {charge_id} is already disputed.", param="charge")
        now = int(time.time())
        dispute = {
            "id": new_id("dp_"), "object": "dispute", "amount": charge["amount"],
            "currency": charge["currency"], "charge": charge_id,
            "payment_intent": charge["payment_intent"], "reason": reason,
            "status": "needs_response", "created": now, "is_charge_refundable": False,
            "metadata": {}, "livemode": False, "balance_transactions": [],
            "evidence_details": {"due_by": now + 7 * 86400, "has_evidence": False,
                                 "past_due": False, "submission_count": 0},
        }
        txn = self._balance_transaction("adjustment", -charge["amount"], charge["currency"],
                                        dispute["id"], fee=DISPUTE_FEE,
                                        reporting_category="dispute")
        dispute["balance_transactions"] = [public(txn)]
        charge["disputed"] = True
        self.disputes[dispute["id"]] = dispute
        self.emit("charge.dispute.created", dispute)
        return dispute

    def get_dispute(self, dispute_id: str) -> dict:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise missing("dispute", dispute_id)
        return dispute

    # --- balance ----------------------------------------------------------------------------
    def _balance_transaction(self, type_: str, amount: int, currency: str, source: str,
                             fee: int = 0, reporting_category: str | None = None) -> dict:
        fee_details = ([{"amount": fee, "currency": currency, "type": "stripe_fee",
                         "description": "Stripe processing fees", "application": None}]
                       if fee else [])
        txn = {"id": new_id("txn_"), "object": "balance_transaction", "type": type_,
               "amount": amount, "fee": fee, "fee_details": fee_details, "net": amount - fee,
               "currency": currency, "source": source, "description": None,
               "created": int(time.time()), "status": "available",
               "reporting_category": reporting_category or _CATEGORY.get(type_, type_),
               "available_on": int(time.time())}
        self.balance_transactions[txn["id"]] = txn
        return txn

    def list_balance_transactions(self, params: dict[str, Any]) -> list[dict]:
        rows = list(self.balance_transactions.values())
        created = params.get("created") or {}
        if isinstance(created, dict):
            for op, test in (("gte", lambda a, b: a >= b), ("gt", lambda a, b: a > b),
                             ("lte", lambda a, b: a <= b), ("lt", lambda a, b: a < b)):
                if op in created:
                    bound = forms.integer(created, op)
                    rows = [r for r in rows if test(r["created"], bound)]
        if params.get("type"):
            rows = [r for r in rows if r["type"] == params["type"]]
        if params.get("payout") or params.get("source"):
            rows = [r for r in rows if r["source"] in (params.get("payout"), params.get("source"))]
        return rows


def _unexpected_state(pi: dict, action: str) -> StripeApiError:
    return invalid(f"This PaymentIntent's {action} could not be performed because it has a "
                   f"status of {pi['status']}.", code="payment_intent_unexpected_state",
                   payment_intent=_snapshot(pi))


def _snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of an object: a copy without the sandbox's private `_` fields."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key.startswith("_"):
            continue
        out[key] = _snapshot(value) if isinstance(value, dict) else value
    return out


public = _snapshot
