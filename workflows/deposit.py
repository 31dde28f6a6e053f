"""The deposit workflow: the runbook of one player deposit, from gate to ledger credit.

    gate  ->  create + confirm the payment  ->  wait for the gateway's verdict  ->  credit
                                                (webhook signal, polling fallback,
                                                 cancel at the timeout)
          refused -> failed          declined -> failed        cancelled / failed -> failed
                     create still failing at its deadline -> review
                     processing at the timeout (cannot be cancelled) -> wait on, up to the
                     processing limit -> review

The gateway's synchronous answer is used when it is already final (a card that succeeds or is
declined at once); otherwise (3-D Secure, asynchronous payment processing) the workflow waits for
the `payment_intent.succeeded` / `payment_intent.payment_failed` webhook, delivered as a signal,
polls the gateway when no webhook comes, and cancels the payment at the timeout. A deposit fails
only when the gateway confirms the payment cancelled or failed: a payment the gateway will not
cancel (processing) keeps the deposit open until `processing_limit_seconds`, then an operator
reviews it; so does a deposit whose gateway step (create, cancel) still fails at its deadline,
instead of retrying one idempotency key for ever. A verdict that comes after the workflow closed
is settled by the webhook route through commands/deposits.py (`settle_after_close`).

Workflow id: `deposit-<deposit id>` (workflows/contracts/deposit.py). PaymentState (search
attribute) is upserted at the step that changes it: `DepositStatus.search_value`.
Logs: each step (activity) and each state is one `workflow.logger` line ("deposit step" with
`deposit_step`, "deposit state" with `deposit_state`; the workflow id comes with the record);
Temporal drops them while replaying, and a log line is no command of the history.
Database steps (gate, credit, fail, review) are local activities: short writes the worker runs
within the workflow task, with no activity task through the server (Patch.LOCAL_DATABASE_STEPS;
before it they were activities, as the gateway steps still are).
Changing running deposits: a change of the commands a deposit under way issues is behind
`workflow.patched(Patch.X)` (workflows/PATCHING.md); tests/workflows/test_replay_deposit.py
replays histories recorded before each patch.
Must never: do I/O or read configuration (timings come in the request), or credit twice (the
ledger key is the workflow id + step, and the credit command checks the deposit row).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

# Passed through the sandbox: a new run would otherwise execute these modules again (their
# dataclasses and enums cost more CPU than the whole run). They are definitions only: no state,
# no I/O, the same for every run.
with workflow.unsafe.imports_passed_through():
    from settlepay import search_attributes as sa
    from workflows.contracts.deposit import (
        PAYMENT_EVENT_SIGNAL,
        STATE_QUERY,
        WORKFLOW,
        Activity,
        Credit,
        DepositFailure,
        DepositRequest,
        DepositResult,
        DepositStatus,
        Failure,
        GatewayStatus,
        Patch,
        Payment,
        PaymentEvent,
        Review,
        ReviewReason,
    )
    from workflows.contracts.refusal import Refusal

T = TypeVar("T")

# Retries for every activity: gateway 5xx, timeouts and database hiccups are retried with the
# same idempotency keys; business refusals are non-retryable ApplicationErrors and stop at once.
# Gateway steps also have a deadline (schedule-to-close): see `create_payment`.
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10))
STEP_TIMEOUT = timedelta(seconds=20)   # one attempt; above the gateway client's own timeout
POLL_DEADLINE = timedelta(seconds=60)  # one poll with its retries; a failed poll is no news
POLL_INTERVAL_MAX_SECONDS = 3600.0     # polling backs off to this while a payment processes
EXPIRED_REASON = "the payment did not complete in time"


@workflow.defn(name=WORKFLOW)
class DepositWorkflow:
    def __init__(self) -> None:
        self._state = DepositStatus.PENDING
        self._seen_events: set[str] = set()
        self._verdicts: dict[str, Payment] = {}   # payment intent -> final payment from a webhook

    # --- the runbook -----------------------------------------------------------------------
    @workflow.run
    async def run(self, req: DepositRequest) -> DepositResult:
        if workflow.info().typed_search_attributes.get(sa.PLAYER_ID) is None:
            self._set_state(DepositStatus.PENDING, req)   # started without them (API sets them)
        refusal = await self.gate(req)
        if refusal is not None:
            return await self.fail(req, Failure(req.deposit_id, refusal.code, refusal.reason))

        created = await self.create_payment(req)
        if isinstance(created, Failure):
            return await self.fail(req, created)
        if isinstance(created, Review):
            return await self.review(req, created)
        payment = created
        if not payment.finished:   # a final answer at once goes straight to succeeded / failed
            self._set_state(DepositStatus.REQUIRES_ACTION
                            if payment.status == GatewayStatus.REQUIRES_ACTION
                            else DepositStatus.PROCESSING)
            waited = await self.wait_for_payment(req, payment)
            if isinstance(waited, Review):
                return await self.review(req, waited)
            payment = waited
        if not payment.succeeded:
            return await self.fail(req, Failure(
                req.deposit_id, payment.failure_code or DepositFailure.PAYMENT_FAILED,
                payment.failure_reason or f"payment ended {payment.status}",
                payment.payment_intent))

        transaction_id = await self.credit_player(req, payment)
        self._set_state(DepositStatus.SUCCEEDED)
        return DepositResult(req.deposit_id, DepositStatus.SUCCEEDED,
                             payment_intent=payment.payment_intent,
                             ledger_transaction_id=transaction_id)

    # --- the steps -------------------------------------------------------------------------
    async def gate(self, req: DepositRequest) -> Refusal | None:
        """Player active, currency, amount bounds, geolocation, limits (compliance gates)."""
        try:
            await self._database_step(Activity.CHECK_GATES, req)
        except (ActivityError, ApplicationError) as error:   # a local activity's: the latter
            return _refusal(error)[0]
        return None

    async def create_payment(self, req: DepositRequest) -> Payment | Failure | Review:
        """Create and confirm the PaymentIntent (gateway key `deposit-<id>:create`). Still
        failing at the gateway deadline: review, never another day under the same key."""
        try:
            return await self._step(Activity.CREATE_PAYMENT, req, result_type=Payment,
                                    deadline=_seconds(req.gateway_deadline_seconds))
        except ActivityError as error:
            refusal, payment_intent = _refusal(error, loud=False)
            if refusal is not None:
                return Failure(req.deposit_id, refusal.code, refusal.reason, payment_intent)
            return Review(req.deposit_id, ReviewReason.GATEWAY_UNREACHABLE,
                          f"creating the payment still failed after "
                          f"{req.gateway_deadline_seconds:.0f} s: {_cause(error)}")

    async def wait_for_payment(self, req: DepositRequest, payment: Payment) -> Payment | Review:
        """Until the payment is final: the webhook first, then polling, then at the timeout
        cancel it (a processing payment cannot be: `wait_while_processing`)."""
        started = workflow.time()
        deadline = started + req.timeout_seconds
        wait = req.webhook_wait_seconds
        while not payment.finished:
            remaining = deadline - workflow.time()
            if remaining <= 0:
                if not workflow.patched(Patch.PROCESSING_STAYS_OPEN):
                    return await self._cancel_at_timeout_before_patch(req, payment)
                payment = await self.cancel_payment(req, payment)
                if payment.finished:
                    return payment
                return await self.wait_while_processing(req, payment, started)
            verdict = await self._verdict(payment.payment_intent, min(wait, remaining))
            if verdict is not None:
                return verdict
            payment = await self._poll(payment)
            wait = req.poll_interval_seconds
        return payment

    async def cancel_payment(self, req: DepositRequest, payment: Payment) -> Payment:
        """Cancel the payment at the timeout: cancelled, the deposit fails `expired`. The gateway
        refuses to cancel a processing payment (it finishes on its own), and a cancel that
        fails until its deadline tells nothing: either way the payment is as it was."""
        try:
            answer: Payment = await self._step(
                Activity.CANCEL_PAYMENT, req.deposit_id, payment.payment_intent,
                result_type=Payment, deadline=_seconds(req.gateway_deadline_seconds))
        except ActivityError:
            return payment
        if answer.status == GatewayStatus.CANCELED:
            answer.failure_code = answer.failure_code or DepositFailure.EXPIRED
            answer.failure_reason = answer.failure_reason or EXPIRED_REASON
        return answer

    async def wait_while_processing(self, req: DepositRequest, payment: Payment,
                                    started: float) -> Payment | Review:
        """The payment could not be cancelled: the deposit stays open for its verdict (webhook,
        polling that backs off) until the processing limit; then an operator reviews it."""
        limit = started + req.processing_limit_seconds
        wait = req.poll_interval_seconds
        while not payment.finished:
            remaining = limit - workflow.time()
            if remaining <= 0:
                return Review(req.deposit_id, ReviewReason.STILL_PROCESSING,
                              f"the gateway gave no verdict within "
                              f"{req.processing_limit_seconds:.0f} s", payment.payment_intent)
            verdict = await self._verdict(payment.payment_intent, min(wait, remaining))
            if verdict is not None:
                return verdict
            payment = await self._poll(payment)
            wait = min(wait * 2, POLL_INTERVAL_MAX_SECONDS)
        return payment

    async def credit_player(self, req: DepositRequest, payment: Payment) -> int:
        """One ledger transaction: gateway clearing -> player cash (key `deposit-<id>:credit`)."""
        return await self._database_step(Activity.CREDIT_PLAYER, Credit(
            deposit_id=req.deposit_id, player_id=req.player_id, amount=req.amount,
            currency=req.currency, payment_intent=payment.payment_intent, charge=payment.charge),
            result_type=int)

    async def fail(self, req: DepositRequest, failure: Failure) -> DepositResult:
        """`failed` with its reason; no ledger effect, the limit reservation released."""
        await self._database_step(Activity.FAIL, failure)
        self._set_state(DepositStatus.FAILED)
        return DepositResult(req.deposit_id, DepositStatus.FAILED, failure_code=failure.code,
                             failure_reason=failure.reason,
                             payment_intent=failure.payment_intent)

    async def review(self, req: DepositRequest, review: Review) -> DepositResult:
        """An operator looks at it (a success the gateway already reported is credited
        instead); a verdict arriving later is settled by the webhook route."""
        status = DepositStatus(await self._database_step(Activity.REVIEW, review,
                                                         result_type=str))
        self._set_state(status)
        return DepositResult(req.deposit_id, status, payment_intent=review.payment_intent,
                             review_code=review.code, review_reason=review.reason)

    # --- signals and queries -----------------------------------------------------------------
    @workflow.signal(name=PAYMENT_EVENT_SIGNAL)
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

    @workflow.query(name=STATE_QUERY)
    def state(self) -> str:
        return str(self._state)

    # --- helpers -------------------------------------------------------------------------------
    async def _verdict(self, payment_intent: str, timeout: float) -> Payment | None:
        """The webhook's verdict, if one comes within `timeout` seconds."""
        try:
            await workflow.wait_condition(lambda: payment_intent in self._verdicts,
                                          timeout=timeout)
        except TimeoutError:
            return None
        return self._verdicts[payment_intent]

    async def _poll(self, payment: Payment) -> Payment:
        """Ask the gateway; a poll that keeps failing is no news (the next one may answer)."""
        try:
            return await self._step(Activity.RETRIEVE_PAYMENT, payment.payment_intent,
                                    result_type=Payment, deadline=POLL_DEADLINE)
        except ActivityError:
            return payment

    async def _cancel_at_timeout_before_patch(self, req: DepositRequest,
                                              payment: Payment) -> Payment:
        """Deposits started before Patch.PROCESSING_STAYS_OPEN: an unfinished payment counted as
        abandoned, even one the gateway would not cancel. Kept so that they replay."""
        payment = await self._step(Activity.CANCEL_PAYMENT, req.deposit_id,
                                   payment.payment_intent, result_type=Payment)
        if not payment.finished:
            return Payment(payment.payment_intent, GatewayStatus.CANCELED,
                           failure_code=DepositFailure.EXPIRED, failure_reason=EXPIRED_REASON)
        if payment.status == GatewayStatus.CANCELED:
            payment.failure_code = payment.failure_code or DepositFailure.EXPIRED
            payment.failure_reason = payment.failure_reason or EXPIRED_REASON
        return payment

    async def _step(self, activity: Activity, *args: Any, result_type: type[T] | None = None,
                    deadline: timedelta | None = None) -> T:
        """Run one activity by name: one attempt within STEP_TIMEOUT, retried per RETRY, up to
        `deadline` in all (None: until it succeeds or refuses)."""
        workflow.logger.info("deposit step", extra={"deposit_step": str(activity)})
        return await workflow.execute_activity(
            activity, args=list(args), result_type=result_type,
            start_to_close_timeout=STEP_TIMEOUT, schedule_to_close_timeout=deadline,
            retry_policy=RETRY)

    async def _database_step(self, activity: Activity, *args: Any,
                             result_type: type[T] | None = None) -> T:
        """A short database write (a command in one transaction): a local activity, run by this
        worker within the workflow task, retried per RETRY. Deposits started before
        Patch.LOCAL_DATABASE_STEPS ran it as an activity, and still do (the first call decides
        for the whole run: `workflow.patched` is memoized)."""
        if not workflow.patched(Patch.LOCAL_DATABASE_STEPS):
            return await self._step(activity, *args, result_type=result_type)
        workflow.logger.info("deposit step", extra={"deposit_step": str(activity)})
        return await workflow.execute_local_activity(
            activity, args=list(args), result_type=result_type,
            start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY)

    def _set_state(self, state: DepositStatus, req: DepositRequest | None = None) -> None:
        self._state = state
        workflow.logger.info("deposit state", extra={"deposit_state": str(state)})
        updates = [sa.PAYMENT_STATE.value_set(state.search_value)]
        if req is not None:
            updates += [sa.PLAYER_ID.value_set(req.player_id), sa.AMOUNT.value_set(req.amount),
                        sa.CURRENCY.value_set(req.currency)]
        workflow.upsert_search_attributes(updates)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _refusal(error: ActivityError | ApplicationError, *,
             loud: bool = True) -> tuple[Refusal | None, str | None]:
    """The business refusal an activity raised, and the payment intent it names (its first
    detail). Anything else (a bug, a deadline passed) is re-raised when `loud`, so it fails the
    workflow task instead of inventing a reason; otherwise (None, None)."""
    refusal = Refusal.of(error)
    if refusal is None:
        if loud:
            raise error
        return None, None
    cause = error if isinstance(error, ApplicationError) else error.cause
    details = cause.details if isinstance(cause, ApplicationError) else ()
    return refusal, (str(details[0]) if details and details[0] else None)


def _cause(error: ActivityError) -> str:
    cause = error.cause
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
