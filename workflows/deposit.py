"""The deposit workflow: the runbook of one player deposit, from gate to ledger credit.

    gate  ->  create + confirm the payment  ->  wait for the gateway's verdict  ->  credit
                                                (webhook signal, polling fallback, timeout)

The gateway's synchronous answer is used when it is already final (a card that succeeds or is
declined at once); otherwise (3-D Secure, asynchronous payment processing) the workflow waits for
the `payment_intent.succeeded` / `payment_intent.payment_failed` webhook, delivered as a signal,
polls the gateway when no webhook comes, and cancels the payment when it never finishes.
A declined or abandoned payment ends `failed` with its reason and no ledger effect.

Workflow id: `deposit-<deposit id>`. PaymentState (search attribute) is upserted at the step
that changes it: PENDING, REQUIRES_ACTION, PROCESSING, SUCCEEDED, FAILED.
Must never: do I/O or read configuration (timings come in the request), or credit twice (the
ledger key is the workflow id + step, and the credit activity checks the deposit row).
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.deposit import (
        Credit,
        DepositActivities,
        DepositRequest,
        DepositResult,
        Failure,
        Payment,
        PaymentEvent,
    )
    from settlepay import search_attributes as sa

# Retries for every activity: gateway 5xx, timeouts and database hiccups are retried with the
# same idempotency keys; business refusals are non-retryable ApplicationErrors and stop at once.
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10))
STEP_TIMEOUT = timedelta(seconds=20)   # one attempt; above the gateway client's own timeout

PENDING, PROCESSING, REQUIRES_ACTION = "PENDING", "PROCESSING", "REQUIRES_ACTION"
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"


@workflow.defn(name="Deposit")
class DepositWorkflow:
    def __init__(self) -> None:
        self._state = PENDING
        self._seen_events: set[str] = set()
        self._verdicts: dict[str, Payment] = {}   # payment intent -> final payment from a webhook

    # --- the runbook -----------------------------------------------------------------------
    @workflow.run
    async def run(self, req: DepositRequest) -> DepositResult:
        if workflow.info().typed_search_attributes.get(sa.PLAYER_ID) is None:
            self._set_state(PENDING, req)   # started without them (the API sets them at start)
        refusal = await self.gate(req)
        if refusal is not None:
            return await self.fail(req, refusal.code, refusal.reason)

        payment = await self.create_payment(req)
        if isinstance(payment, Failure):
            return await self.fail(req, payment.code, payment.reason, payment.payment_intent)
        if not payment.finished:   # a final answer at once goes straight to SUCCEEDED / FAILED
            self._set_state(REQUIRES_ACTION if payment.status == "requires_action" else PROCESSING)
            payment = await self.wait_for_payment(req, payment)
        if not payment.succeeded:
            return await self.fail(req, payment.failure_code or "payment_failed",
                                   payment.failure_reason or f"payment ended {payment.status}",
                                   payment.payment_intent)

        transaction_id = await self.credit_player(req, payment)
        self._set_state(SUCCEEDED)
        return DepositResult(req.deposit_id, "succeeded", payment_intent=payment.payment_intent,
                             ledger_transaction_id=transaction_id)

    # --- the steps -------------------------------------------------------------------------
    async def gate(self, req: DepositRequest) -> Failure | None:
        """Player active, currency, amount bounds, geolocation, limits (compliance gates)."""
        try:
            await workflow.execute_activity_method(DepositActivities.check_gates, req,
                                                   start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)
        except ActivityError as error:
            return _business_failure(req, error)
        return None

    async def create_payment(self, req: DepositRequest) -> Payment | Failure:
        """Create and confirm the PaymentIntent (gateway key `deposit-<id>:create`)."""
        try:
            return await workflow.execute_activity_method(
                DepositActivities.create_payment, req, start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY)
        except ActivityError as error:
            return _business_failure(req, error)

    async def wait_for_payment(self, req: DepositRequest, payment: Payment) -> Payment:
        """Until the payment is final: the webhook first, then polling, then cancel at timeout."""
        deadline = workflow.time() + req.timeout_seconds
        wait = req.webhook_wait_seconds
        while not payment.finished:
            remaining = deadline - workflow.time()
            if remaining <= 0:
                payment = await self._activity(DepositActivities.cancel_payment, req.deposit_id,
                                               payment.payment_intent)
                if not payment.finished:  # neither cancelled nor finished: treat as abandoned
                    return Payment(payment.payment_intent, "canceled", failure_code="expired",
                                   failure_reason="the payment did not complete in time")
                if payment.status == "canceled":
                    payment.failure_code = payment.failure_code or "expired"
                    payment.failure_reason = payment.failure_reason or "the payment did not complete in time"
                return payment
            intent = payment.payment_intent
            try:
                await workflow.wait_condition(lambda: intent in self._verdicts,
                                              timeout=min(wait, remaining))
                return self._verdicts[intent]
            except asyncio.TimeoutError:
                payment = await self._activity(DepositActivities.retrieve_payment, intent)
                wait = req.poll_interval_seconds
        return payment

    async def credit_player(self, req: DepositRequest, payment: Payment) -> int:
        """One ledger transaction: gateway clearing -> player cash (key `deposit-<id>:credit`)."""
        return await self._activity(DepositActivities.credit_player, Credit(
            deposit_id=req.deposit_id, player_id=req.player_id, amount=req.amount,
            currency=req.currency, payment_intent=payment.payment_intent, charge=payment.charge))

    async def fail(self, req: DepositRequest, code: str, reason: str,
                   payment_intent: str | None = None) -> DepositResult:
        await self._activity(DepositActivities.fail, Failure(req.deposit_id, code, reason, payment_intent))
        self._set_state(FAILED)
        return DepositResult(req.deposit_id, "failed", failure_code=code, failure_reason=reason,
                             payment_intent=payment_intent)

    # --- signals and queries -----------------------------------------------------------------
    @workflow.signal(name="payment_event")
    def payment_event(self, event: PaymentEvent) -> None:
        """A verified gateway webhook. Duplicates are dropped; only final verdicts count, and a
        success is never overwritten by a late failure (reordered delivery)."""
        if event.event_id in self._seen_events:
            return
        self._seen_events.add(event.event_id)
        payment = event.payment
        if not payment.finished:
            return
        known = self._verdicts.get(payment.payment_intent)
        if known is None or not known.succeeded:
            self._verdicts[payment.payment_intent] = payment

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    # --- helpers -------------------------------------------------------------------------------
    async def _activity(self, method, *args):  # noqa: ANN001, ANN202
        return await workflow.execute_activity_method(method, args=list(args),
                                                      start_to_close_timeout=STEP_TIMEOUT,
                                                      retry_policy=RETRY)

    def _set_state(self, state: str, req: DepositRequest | None = None) -> None:
        self._state = state
        updates = [sa.PAYMENT_STATE.value_set(state)]
        if req is not None:
            updates += [sa.PLAYER_ID.value_set(req.player_id), sa.AMOUNT.value_set(req.amount),
                        sa.CURRENCY.value_set(req.currency)]
        workflow.upsert_search_attributes(updates)


def _business_failure(req: DepositRequest, error: ActivityError) -> Failure:
    """A non-retryable refusal from an activity becomes the deposit's failure; anything else
    (a bug, retries exhausted) fails the workflow task loudly instead of inventing a reason."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
        payment_intent = cause.details[0] if cause.details else None
        return Failure(req.deposit_id, cause.type, cause.message, payment_intent)
    raise error
