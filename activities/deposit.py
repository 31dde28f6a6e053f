"""Deposit activities: each one translates arguments, does ONE thing (a gate check, a gateway
call, a ledger posting) and translates failures into retryable / non-retryable.

The data types the deposit workflow exchanges with its activities and signals live here too.
Idempotency comes from the business operation: the gateway key is `<workflow id>:<step>`, the
ledger key `<workflow id>:credit`; a retried activity gets the same answer, never a second effect.
Every deposit state change commits with its audit record and outbox event.
Must never: hold a decision that belongs to the workflow (what to do after a failure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

import audit
import ledger
import outbox
from adapters.gateway import (
    GatewayDeclined,
    GatewayInvalidRequest,
    PaymentGateway,
    PaymentIntent,
)
from commands.limits import gate_deposit, release_deposit_amount
from compliance import gates
from ledger import AccountRef, Leg, Transfer
from settlepay.db import run_in_transaction
from store import deposits as store
from sqlalchemy import Engine

from settlepay.config import Settings

# --- what the workflow, the activities and the webhook route exchange -----------------------


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
    # Timing from Settings, fixed at start so the workflow never reads configuration.
    webhook_wait_seconds: float = 30.0
    poll_interval_seconds: float = 10.0
    timeout_seconds: float = 1800.0

    @property
    def workflow_id(self) -> str:
        return store.workflow_id_for(self.deposit_id)


@dataclass
class Payment:
    """Where the gateway says a payment is (from an API answer or a webhook)."""
    payment_intent: str
    status: str                   # Stripe PaymentIntent status
    charge: str | None = None
    next_action: dict[str, Any] | None = None
    failure_code: str | None = None
    failure_reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        return self.status == "canceled" or (self.status == "requires_payment_method"
                                             and self.failure_code is not None)

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
class DepositResult:
    deposit_id: str
    status: str
    failure_code: str | None = None
    failure_reason: str | None = None
    payment_intent: str | None = None
    ledger_transaction_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def payment_of(intent: PaymentIntent) -> Payment:
    error = intent.last_payment_error
    next_action = None
    if intent.next_action is not None:
        next_action = {"type": intent.next_action.type, "redirect_url": intent.next_action.redirect_url,
                       "return_url": intent.next_action.return_url}
    return Payment(payment_intent=intent.id, status=intent.status, charge=intent.latest_charge,
                   next_action=next_action,
                   failure_code=None if error is None else (error.decline_code or error.code or "payment_failed"),
                   failure_reason=None if error is None else error.message)


def payment_from_event_object(obj: dict[str, Any]) -> Payment:
    """A payment from a `payment_intent.*` event snapshot (the webhook route uses it)."""
    error = obj.get("last_payment_error") or None
    charge = obj.get("latest_charge")
    if isinstance(charge, dict):
        charge = charge.get("id")
    return Payment(payment_intent=obj["id"], status=obj.get("status", "unknown"), charge=charge,
                   failure_code=None if not error else (error.get("decline_code") or error.get("code")
                                                        or "payment_failed"),
                   failure_reason=None if not error else error.get("message"))


# --- the activities ------------------------------------------------------------------------

class DepositActivities:
    def __init__(self, engine: Engine, settings: Settings, gateway: PaymentGateway) -> None:
        self.engine = engine
        self.settings = settings
        self.gateway = gateway

    @activity.defn(name="deposit.check_gates")
    def check_gates(self, req: DepositRequest) -> None:
        """All gates, then the responsible-gaming reservation, in one transaction."""
        settings = self.settings

        def work(conn) -> gates.GateDecision:  # noqa: ANN001
            # Idempotent per deposit: a retry gets the recorded reservation (issue 9, item 10).
            return gate_deposit(conn, settings, gates.GateRequest(
                player_id=req.player_id, operation=gates.Operation.DEPOSIT, amount=req.amount,
                currency=req.currency, ip_address=req.ip_address, deposit_id=req.deposit_id),
                actor=f"workflow:{req.workflow_id}")

        decision = run_in_transaction(self.engine, work)
        if not decision.allowed:
            raise ApplicationError(decision.reason, type=decision.code, non_retryable=True)

    @activity.defn(name="deposit.create_payment")
    def create_payment(self, req: DepositRequest) -> Payment:
        """Create and confirm the PaymentIntent, then record its id and state on the deposit."""
        try:
            intent = self.gateway.create_payment_intent(
                amount=req.amount, currency=req.currency, payment_method=req.payment_method,
                idempotency_key=f"{req.workflow_id}:create", return_url=req.return_url,
                metadata={"settlepay_deposit_id": req.deposit_id, "player_id": req.player_id})
        except GatewayDeclined as declined:
            pi = declined.payment_intent.id if declined.payment_intent else None
            raise ApplicationError(declined.message, pi, type=declined.reason, non_retryable=True) from declined
        except GatewayInvalidRequest as invalid:
            code = "payment_method_invalid" if invalid.param == "payment_method" else "gateway_rejected_request"
            raise ApplicationError(invalid.message, None, type=code, non_retryable=True) from invalid
        payment = payment_of(intent)
        if payment.finished:
            # Final at once (the usual card payment): the next step records it - credit or
            # failure - in one transaction; a `processing` row in between would only cost a commit.
            return payment
        status = store.REQUIRES_ACTION if payment.status == "requires_action" else store.PROCESSING
        run_in_transaction(self.engine, lambda conn: self._record_payment(conn, req, payment, status))
        return payment

    def _record_payment(self, conn, req: DepositRequest, payment: Payment, status: str) -> None:  # noqa: ANN001
        before = store.get(conn, req.deposit_id, for_update=True)
        if before is None or before["status"] in store.FINAL or (
                before["status"] == status and before["gateway_payment_intent"] == payment.payment_intent):
            return  # already recorded by an earlier attempt
        after = store.mark_payment(conn, req.deposit_id, status=status, payment_intent=payment.payment_intent,
                                   charge=payment.charge, next_action=payment.next_action)
        actor = f"workflow:{req.workflow_id}"
        audit.record(conn, actor=actor, action=f"deposit.{status}", subject_type="deposit",
                     subject_id=req.deposit_id, before={"status": before["status"]},
                     after={"status": status, "gateway_payment_intent": payment.payment_intent})
        if status == store.REQUIRES_ACTION:  # the partner must send the player to 3-D Secure
            outbox.emit(conn, event_type="deposit.requires_action", aggregate_type="deposit",
                        aggregate_id=req.deposit_id, payload=_public(after),
                        player_id=req.player_id, partner_id=req.partner_id)

    @activity.defn(name="deposit.retrieve_payment")
    def retrieve_payment(self, payment_intent: str) -> Payment:
        return payment_of(self.gateway.retrieve_payment_intent(payment_intent))

    @activity.defn(name="deposit.cancel_payment")
    def cancel_payment(self, deposit_id: str, payment_intent: str) -> Payment:
        """Cancel an unfinished payment; if it finished meanwhile, say how it finished."""
        try:
            intent = self.gateway.cancel_payment_intent(
                payment_intent, idempotency_key=f"{store.workflow_id_for(deposit_id)}:cancel",
                reason="abandoned")
        except GatewayInvalidRequest as error:
            if error.code != "payment_intent_unexpected_state":
                raise ApplicationError(error.message, type="gateway_rejected_request",
                                       non_retryable=True) from error
            intent = self.gateway.retrieve_payment_intent(payment_intent)
        return payment_of(intent)

    @activity.defn(name="deposit.credit_player")
    def credit_player(self, credit: Credit) -> int:
        """Gateway clearing -> player cash, with the deposit row, audit and outbox: one commit."""
        workflow_id = store.workflow_id_for(credit.deposit_id)
        transfer = Transfer(
            key=f"{workflow_id}:credit", kind="deposit", reference=credit.deposit_id,
            legs=(Leg(AccountRef.gateway_clearing("stripe", credit.currency), -credit.amount),
                  Leg(AccountRef.player_cash(credit.player_id, credit.currency), credit.amount)),
            metadata={"payment_intent": credit.payment_intent})

        def work(conn) -> int:  # noqa: ANN001
            before = store.get(conn, credit.deposit_id, for_update=True)
            if before is None:
                raise ApplicationError(f"deposit {credit.deposit_id} not found", type="deposit_not_found",
                                       non_retryable=True)
            if before["status"] == store.SUCCEEDED:
                return before["ledger_transaction_id"]
            if before["status"] == store.FAILED:
                raise ApplicationError("deposit already failed", type="deposit_already_failed",
                                       non_retryable=True)
            result = ledger.post(conn, transfer)
            if not result.ok:
                raise ApplicationError(f"ledger refused the deposit credit: {result.code}",
                                       type=str(result.code), non_retryable=True)
            after = store.mark_succeeded(conn, credit.deposit_id, payment_intent=credit.payment_intent,
                                         charge=credit.charge, ledger_transaction_id=result.transaction_id)
            audit.record(conn, actor=f"workflow:{workflow_id}", action="deposit.succeeded",
                         subject_type="deposit", subject_id=credit.deposit_id,
                         before={"status": before["status"]},
                         after={"status": "succeeded", "ledger_transaction_id": result.transaction_id,
                                "amount": credit.amount, "currency": credit.currency})
            outbox.emit(conn, event_type="deposit.succeeded", aggregate_type="deposit",
                        aggregate_id=credit.deposit_id, payload=_public(after),
                        player_id=credit.player_id, partner_id=before["partner_id"])
            return result.transaction_id

        return run_in_transaction(self.engine, work)

    @activity.defn(name="deposit.fail")
    def fail(self, failure: Failure) -> None:
        """Record the failure (no ledger effect) and stop counting it against deposit limits."""
        workflow_id = store.workflow_id_for(failure.deposit_id)

        def work(conn) -> None:  # noqa: ANN001
            before = store.get(conn, failure.deposit_id, for_update=True)
            if before is None or before["status"] in store.FINAL:
                return
            after = store.mark_failed(conn, failure.deposit_id, code=failure.code, reason=failure.reason,
                                      payment_intent=failure.payment_intent)
            release_deposit_amount(conn, failure.deposit_id, actor=f"workflow:{workflow_id}")
            audit.record(conn, actor=f"workflow:{workflow_id}", action="deposit.failed",
                         subject_type="deposit", subject_id=failure.deposit_id,
                         before={"status": before["status"]},
                         after={"status": "failed", "failure_code": failure.code,
                                "failure_reason": failure.reason})
            outbox.emit(conn, event_type="deposit.failed", aggregate_type="deposit",
                        aggregate_id=failure.deposit_id, payload=_public(after),
                        player_id=before["player_id"], partner_id=before["partner_id"])

        run_in_transaction(self.engine, work)

    def all(self) -> list:
        return [self.check_gates, self.create_payment, self.retrieve_payment, self.cancel_payment,
                self.credit_player, self.fail]


def _public(row) -> dict[str, Any]:  # noqa: ANN001
    """What partners see of a deposit: the same resource the API answers with."""
    return store.resource(row)
