"""The withdrawal workflow: the runbook of one player withdrawal, from checks to the gateway.

    checks -> hold -> second factor -> (operator approval above the threshold)
           -> closed loop: refunds to deposits first, the rest as a payout, each confirmed
              by the gateway -> post the hold | release it

1. checks: KYC verified, geolocation valid, no open debt, amount <= available cash (gates).
2. hold: player cash -> pending withdrawal, a pending ledger transfer (`withdrawal-<id>:hold`).
3. second factor: TOTP for enrolled players, otherwise a one-time code sent by the notification
   provider. The code comes as the Update `submit_second_factor`: its validator refuses a
   malformed code or one that is not expected now (not recorded in history); a wrong code fails
   the update with the attempts left; the third wrong code, or no code within
   `two_factor_timeout_seconds`, cancels the withdrawal.
4. approval: above `approval_threshold`, an operator's `review` signal (Temporal UI:
   ReviewPending = "withdrawal_approval").
5. payout: refunds, then a payout, each with its own gateway idempotency key; after this step
   begins the player can no longer cancel (Update `cancel`, refused by its validator).
6. paid: post the hold and clear it to the gateway; a final gateway failure posts what was paid
   and voids the rest. A cancelled or rejected withdrawal voids the hold.

Workflow id: `withdrawal-<withdrawal id>`. WithdrawalState (search attribute) is upserted at the
step that changes it. Must never: do I/O or read configuration (timings come in the request).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.withdrawal import (
        ApprovalDecision,
        CancelRequest,
        Challenge,
        LegStatus,
        PayoutLeg,
        Release,
        SecondFactorAnswer,
        SecondFactorAttempt,
        SecondFactorCode,
        Step,
        WithdrawalActivities,
        WithdrawalRequest,
        WithdrawalResult,
    )
    from settlepay import search_attributes as sa

# Gateway 5xx, timeouts and database hiccups are retried with the same idempotency keys, without
# a limit: a payout that may have happened must never be given up and voided. Business refusals
# are non-retryable ApplicationErrors and stop at once.
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30))
STEP_TIMEOUT = timedelta(seconds=30)
MAX_POLL_SECONDS = 600.0

# Withdrawal states, as store/withdrawals.py names them.
CHECKING, HELD, AWAITING_2FA, AWAITING_APPROVAL = "checking", "held", "awaiting_2fa", "awaiting_approval"
PAYING, PAID, CANCELLED, REJECTED, FAILED = "paying", "paid", "cancelled", "rejected", "failed"
FINAL = (PAID, CANCELLED, REJECTED, FAILED)
CANCELLABLE = (CHECKING, HELD, AWAITING_2FA, AWAITING_APPROVAL)
APPROVAL_REVIEW = "withdrawal_approval"


@workflow.defn(name="Withdrawal")
class WithdrawalWorkflow:
    def __init__(self) -> None:
        self._req: WithdrawalRequest | None = None
        self._state = CHECKING
        self._challenge: Challenge | None = None
        self._attempts_left = 0
        self._verified = False
        self._cancel: CancelRequest | None = None
        self._approval: ApprovalDecision | None = None
        self._verifying = asyncio.Lock()   # one code checked at a time
        self._finished = False             # the result is decided: waiting updates may answer

    # --- the runbook -------------------------------------------------------------------------
    @workflow.run
    async def run(self, req: WithdrawalRequest) -> WithdrawalResult:
        self._req = req
        self._set_state(CHECKING, first=True)
        refusal = await self.check(req)
        if refusal is None:
            refusal = await self.hold(req)
        if refusal is not None:
            return await self.finish(req, REJECTED, *refusal, held=False)
        self._set_state(HELD)

        if self._cancel is None:
            failure = await self.second_factor(req)
            if failure is not None:
                return await self.finish(req, CANCELLED, *failure)
        if self._cancel is None and req.amount > req.approval_threshold:
            decision = await self.operator_approval(req)
            if decision is not None and decision.decision != "approve":
                return await self.finish(req, REJECTED, "rejected_by_operator",
                                         decision.note or f"rejected by {decision.operator}",
                                         actor=decision.operator)
        if self._cancel is not None:
            return await self.finish(req, CANCELLED, "cancelled_by_player",
                                     self._cancel.reason or "cancelled before payout", actor=self._cancel.actor)

        self._set_state(PAYING)   # from here on the player can no longer cancel
        await self._activity(WithdrawalActivities.record, Step(req.withdrawal_id, PAYING, "payout", "started"))
        paid, failure = await self.pay_out(req)
        if failure is None:
            await self._activity(WithdrawalActivities.complete, req)
            self._set_state(PAID)
            return await self._result(WithdrawalResult(req.withdrawal_id, PAID, paid_amount=paid))
        return await self.finish(req, FAILED, "payout_failed", failure, paid_amount=paid)

    # --- the steps ---------------------------------------------------------------------------
    async def check(self, req: WithdrawalRequest) -> tuple[str, str] | None:
        """KYC, geolocation, exclusions, open debt, available cash: the first refusal wins."""
        return await self._refusable(WithdrawalActivities.check, req)

    async def hold(self, req: WithdrawalRequest) -> tuple[str, str] | None:
        """Player cash -> pending withdrawal; refused when concurrent withdrawals took the cash."""
        return await self._refusable(WithdrawalActivities.hold, req)

    async def second_factor(self, req: WithdrawalRequest) -> tuple[str, str] | None:
        """Challenge the player, then wait for a right code, three wrong ones, a cancel or the
        deadline. None when the code was right."""
        # The workflow takes codes before the database says awaiting_2fa (written by the
        # activity), so a client that reads that state and answers at once is never refused.
        self._attempts_left = req.two_factor_max_attempts
        self._set_state(AWAITING_2FA)
        self._challenge = await self._activity(WithdrawalActivities.start_second_factor, req)
        try:
            await workflow.wait_condition(
                lambda: self._verified or self._attempts_left == 0 or self._cancel is not None,
                timeout=timedelta(seconds=req.two_factor_timeout_seconds))
        except asyncio.TimeoutError:
            # Stop taking codes before the cancellation is written (a late right code loses).
            self._state = CANCELLED
            return "second_factor_expired", "no second-factor code within the time allowed"
        if self._verified:
            return None
        if self._attempts_left == 0:
            self._state = CANCELLED
            return "second_factor_failed", f"{req.two_factor_max_attempts} wrong second-factor codes"
        return None   # cancel requested: handled by the runbook

    async def operator_approval(self, req: WithdrawalRequest) -> ApprovalDecision | None:
        """Wait (without a deadline) for an operator's decision; None if the player cancels."""
        # Ready for the signal before the database shows the withdrawal waiting for it.
        self._set_state(AWAITING_APPROVAL, review=APPROVAL_REVIEW)
        await self._activity(WithdrawalActivities.record, Step(
            req.withdrawal_id, AWAITING_APPROVAL, "approval", "requested",
            {"threshold": req.approval_threshold}, event="withdrawal.approval_required"))
        await workflow.wait_condition(lambda: self._approval is not None or self._cancel is not None)
        self._set_state(self._state, review=None)
        if self._approval is not None and self._approval.decision == "approve":
            await self._activity(WithdrawalActivities.record, Step(
                req.withdrawal_id, AWAITING_APPROVAL, "approval", "approved",
                {"operator": self._approval.operator, "note": self._approval.note}))
        return self._approval

    async def pay_out(self, req: WithdrawalRequest) -> tuple[int, str | None]:
        """Every leg of the closed-loop plan, in order, each until the gateway confirms it.
        (amount paid, None) when all are confirmed, else (amount paid so far, why it stopped)."""
        legs = await self._activity(WithdrawalActivities.plan_payouts, req)
        paid = 0
        for leg in legs:
            status = await self.pay_leg(req, leg)
            if status.state != "confirmed":
                return paid, f"{leg.method} {leg.n} failed: {status.failure or 'gateway refused it'}"
            paid += leg.amount
        return paid, None

    async def pay_leg(self, req: WithdrawalRequest, leg: PayoutLeg) -> LegStatus:
        status = await self._activity(WithdrawalActivities.send_payout, leg)
        wait = req.payout_poll_seconds
        while status.state == "pending":
            await workflow.sleep(wait)
            wait = min(wait * 2, MAX_POLL_SECONDS)
            status = await self._activity(WithdrawalActivities.refresh_payout, leg, status.gateway_ref)
        return status

    async def finish(self, req: WithdrawalRequest, state: str, reason_code: str, reason: str, *,
                     held: bool = True, paid_amount: int = 0, actor: str | None = None) -> WithdrawalResult:
        """Cancelled, rejected or failed: void the hold (or post what was paid) and say why."""
        self._state = state
        await self._activity(WithdrawalActivities.release, Release(
            req.withdrawal_id, state, reason_code, reason, actor or f"workflow:{req.workflow_id}",
            held=held, paid_amount=paid_amount, gateway_provider=req.gateway_provider))
        self._set_state(state)
        return await self._result(WithdrawalResult(req.withdrawal_id, state, reason_code, reason, paid_amount))

    # --- updates, signals, queries -------------------------------------------------------------
    @workflow.update(name="submit_second_factor")
    async def submit_second_factor(self, submission: SecondFactorCode) -> SecondFactorAnswer:
        req = self._req
        assert req is not None
        # A code may come while the challenge is still being sent: check it once it is.
        await workflow.wait_condition(lambda: self._challenge is not None or self._state != AWAITING_2FA)
        async with self._verifying:
            if self._state != AWAITING_2FA or self._verified or self._attempts_left == 0:
                raise ApplicationError("the withdrawal is no longer waiting for a code",
                                       {"state": self._state}, type="second_factor_not_expected",
                                       non_retryable=True)
            assert self._challenge is not None
            ok = await self._activity(WithdrawalActivities.verify_second_factor, SecondFactorAttempt(
                req.withdrawal_id, req.player_id, self._challenge.method, submission.code,
                self._attempts_left - 1))
            if self._state != AWAITING_2FA:   # the deadline passed while the code was checked
                raise ApplicationError("the code came too late", {"state": self._state},
                                       type="second_factor_not_expected", non_retryable=True)
            if ok:
                self._verified = True
                return SecondFactorAnswer(True, self._state, self._attempts_left)
            self._attempts_left -= 1
            if self._attempts_left == 0:
                raise ApplicationError("wrong code: no attempts left, the withdrawal is cancelled",
                                       {"attempts_left": 0}, type="second_factor_failed", non_retryable=True)
            raise ApplicationError(f"wrong code: {self._attempts_left} attempts left",
                                   {"attempts_left": self._attempts_left}, type="second_factor_invalid",
                                   non_retryable=True)

    @submit_second_factor.validator
    def _validate_second_factor(self, submission: SecondFactorCode) -> None:
        # Rejected here, an update leaves no trace in history (cheap to refuse junk).
        if not (submission.code.isdigit() and len(submission.code) == 6):
            raise ApplicationError("a code is 6 digits", type="second_factor_malformed")
        if self._state != AWAITING_2FA or self._verified or self._attempts_left == 0:
            raise ApplicationError(f"the withdrawal is {self._state}, not waiting for a code",
                                   {"state": self._state}, type="second_factor_not_expected")

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> str:
        """The player cancels before the payout: answers the final state (hold voided)."""
        if self._cancel is None:
            self._cancel = request
        await workflow.wait_condition(lambda: self._state in FINAL and self._finished)
        return self._state

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._state not in CANCELLABLE:
            raise ApplicationError(f"the withdrawal is {self._state}: too late to cancel",
                                   {"state": self._state}, type="withdrawal_not_cancellable")

    @workflow.signal(name="review")
    def review(self, decision: ApprovalDecision) -> None:
        if self._state == AWAITING_APPROVAL and self._approval is None and decision.decision in ("approve", "reject"):
            self._approval = decision

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    # --- helpers -----------------------------------------------------------------------------
    async def _result(self, result: WithdrawalResult) -> WithdrawalResult:
        self._finished = True
        # Updates still running (a cancel waiting for the final state) answer before the end.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _refusable(self, method, req: WithdrawalRequest) -> tuple[str, str] | None:  # noqa: ANN001
        try:
            await self._activity(method, req)
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
                return cause.type, cause.message
            raise
        return None

    async def _activity(self, method, *args):  # noqa: ANN001, ANN202
        return await workflow.execute_activity_method(method, args=list(args),
                                                      start_to_close_timeout=STEP_TIMEOUT,
                                                      retry_policy=RETRY)

    def _set_state(self, state: str, *, first: bool = False, review: str | None | bool = False) -> None:
        self._state = state
        req = self._req
        if req is None or not req.index_search_attributes:
            return
        updates = [sa.WITHDRAWAL_STATE.value_set(state.upper())]
        if first:
            updates += [sa.PLAYER_ID.value_set(req.player_id), sa.AMOUNT.value_set(req.amount),
                        sa.CURRENCY.value_set(req.currency)]
        if review is None:
            updates.append(sa.REVIEW_PENDING.value_unset())
        elif review:
            updates.append(sa.REVIEW_PENDING.value_set(review))
        workflow.upsert_search_attributes(updates)
