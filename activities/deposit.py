"""Deposit activities: each one translates arguments, does ONE thing (a gate check, a gateway
call, a ledger posting through a command) and translates failures into retryable /
non-retryable.

The types they exchange with the workflow are the contract's (workflows/contracts/deposit.py);
every state change is a command (commands/deposits.py) in one database transaction.
Idempotency comes from the business operation: the gateway key is `<workflow id>:<step>`, the
ledger key `<workflow id>:credit`; a retried activity gets the same answer, never a second effect.
Each activity logs what it did through `activity.logger` (one JSON line with the workflow and
activity ids: statuses, codes and ids, never card data or personal data).
Must never: hold a decision that belongs to the workflow (what to do after a failure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from temporalio import activity

from adapters.gateway import GatewayDeclined, GatewayInvalidRequest, PaymentGateway
from commands import deposits as commands
from commands.deposits import DepositRefused, payment_of
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from workflows.contracts.deposit import (
    Activity,
    Credit,
    DepositFailure,
    DepositRequest,
    DepositStatus,
    Failure,
    Payment,
    Review,
    workflow_id,
)
from workflows.contracts.refusal import Refusal

UNEXPECTED_STATE = "payment_intent_unexpected_state"


class DepositActivities:
    def __init__(self, engine: Engine, settings: Settings, gateway: PaymentGateway) -> None:
        self.engine = engine
        self.settings = settings
        self.gateway = gateway

    @activity.defn(name=Activity.CHECK_GATES)
    def check_gates(self, req: DepositRequest) -> None:
        """All gates, then the responsible-gaming reservation, in one transaction."""
        refusal = run_in_transaction(self.engine,
                                     lambda conn: commands.gate(conn, self.settings, req))
        if refusal is not None:
            _log("deposit gates refused", refusal_code=refusal.code)
            raise refusal.as_error()
        _log("deposit gates passed")

    @activity.defn(name=Activity.CREATE_PAYMENT)
    def create_payment(self, req: DepositRequest) -> Payment:
        """Create and confirm the PaymentIntent, then record its id and state on the deposit."""
        try:
            intent = self.gateway.create_payment_intent(
                amount=req.amount, currency=req.currency, payment_method=req.payment_method,
                idempotency_key=f"{req.workflow_id}:create", return_url=req.return_url,
                metadata={"settlepay_deposit_id": req.deposit_id, "player_id": req.player_id})
        except GatewayDeclined as declined:
            pi = declined.payment_intent.id if declined.payment_intent else None
            _log("deposit payment declined", decline_code=declined.reason, payment_intent=pi)
            raise Refusal(declined.reason, declined.message).as_error(pi) from declined
        except GatewayInvalidRequest as invalid:
            code = (DepositFailure.PAYMENT_METHOD_INVALID if invalid.param == "payment_method"
                    else DepositFailure.GATEWAY_REJECTED_REQUEST)
            raise Refusal(code, invalid.message).as_error(None) from invalid
        payment = payment_of(intent)
        _log("deposit payment created", payment_intent=payment.payment_intent,
             gateway_status=str(payment.status))
        if payment.finished:
            # Final at once (the usual card payment): the next step records it - credit or
            # failure - in one transaction; a `processing` row in between would only cost a
            # commit.
            return payment
        self._transaction(lambda conn: commands.record_payment(conn, req, payment))
        return payment

    @activity.defn(name=Activity.RETRIEVE_PAYMENT)
    def retrieve_payment(self, payment_intent: str) -> Payment:
        payment = payment_of(self.gateway.retrieve_payment_intent(payment_intent))
        _log("deposit payment polled", payment_intent=payment_intent,
             gateway_status=str(payment.status))
        return payment

    @activity.defn(name=Activity.CANCEL_PAYMENT)
    def cancel_payment(self, deposit_id: str, payment_intent: str) -> Payment:
        """Cancel an unfinished payment. The gateway refuses when the payment is processing or
        finished meanwhile: then say where the payment is."""
        try:
            intent = self.gateway.cancel_payment_intent(
                payment_intent, idempotency_key=f"{workflow_id(deposit_id)}:cancel",
                reason="abandoned")
        except GatewayInvalidRequest as error:
            if error.code != UNEXPECTED_STATE:
                raise Refusal(DepositFailure.GATEWAY_REJECTED_REQUEST,
                              error.message).as_error() from error
            intent = self.gateway.retrieve_payment_intent(payment_intent)
        payment = payment_of(intent)
        _log("deposit payment cancel", payment_intent=payment_intent,
             gateway_status=str(payment.status))
        return payment

    @activity.defn(name=Activity.CREDIT_PLAYER)
    def credit_player(self, credit: Credit) -> int:
        """Gateway clearing -> player cash, with the deposit row, audit and outbox: one commit."""
        transaction_id: int = self._transaction(lambda conn: commands.credit(conn, credit))
        _log("deposit credited", ledger_transaction_id=transaction_id)
        return transaction_id

    @activity.defn(name=Activity.FAIL)
    def fail(self, failure: Failure) -> None:
        """Record the failure (no ledger effect) and stop counting it against deposit limits."""
        recorded: bool = self._transaction(lambda conn: commands.fail(conn, failure))
        _log("deposit failed", failure_code=failure.code, recorded=recorded)

    @activity.defn(name=Activity.REVIEW)
    def review(self, review: Review) -> str:
        """The deposit goes to an operator; its status afterwards."""
        status: DepositStatus = self._transaction(lambda conn: commands.review(conn, review))
        _log("deposit reviewed", review_code=str(review.code), deposit_status=str(status))
        return str(status)

    def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        """`work` in one database transaction; a command's refusal becomes non-retryable."""
        try:
            return run_in_transaction(self.engine, work)
        except DepositRefused as refused:
            raise refused.refusal.as_error() from refused

    def all(self) -> list[Callable[..., Any]]:
        return [self.check_gates, self.create_payment, self.retrieve_payment, self.cancel_payment,
                self.credit_player, self.fail, self.review]


def _log(event: str, **fields: Any) -> None:
    """One line of the running activity (its workflow and activity ids come with the record)."""
    activity.logger.info(event, extra=fields)
