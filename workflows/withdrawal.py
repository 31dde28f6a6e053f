"""The withdrawal workflow: the runbook of one player withdrawal, from checks to the gateway.

    checks -> hold -> second factor -> (operator approval above the threshold)
           -> open debt again -> closed loop: refunds to deposits first, the rest as a payout,
              each confirmed by the gateway -> post the hold | release it

1. checks: KYC verified, geolocation valid, no open debt, amount <= available cash (gates).
2. hold: player cash -> pending withdrawal, a pending ledger transfer (`withdrawal-<id>:hold`);
   refused when the hold is not pending afterwards (a closed withdrawal run again).
3. second factor: TOTP for players with a confirmed authenticator, otherwise a one-time code
   sent by the notification provider. The code comes as the Update `submit_second_factor`: its
   validator refuses a malformed code or one not expected now (not recorded in history); a wrong
   code fails the update with the attempts left; the last wrong code, or no code within
   `second_factor_timeout_seconds`, cancels the withdrawal.
4. approval: above `approval_threshold`, an operator's `review` signal (Temporal UI:
   ReviewPending = "withdrawal_approval"); the decision is recorded only once it is taken.
5. open debt again: a clawback while the cash was held (during 2. to 4.) stops the withdrawal;
   the hold is voided and the cash it gives back repays the debt in that currency first. (The
   payout is not reduced instead: a hold is resolved once, and a withdrawal pays what the
   player confirmed or nothing; the player may ask again for what is left.)
6. payout: refunds, then a payout, each with its own gateway idempotency key; after this step
   begins the player can no longer cancel (Update `cancel`, refused by its validator). A leg
   whose gateway step still fails after `gateway_deadline_seconds` waits for an operator
   (ReviewPending = "withdrawal_payout"): approve = try again (the activity looks at the gateway
   first when the key may be forgotten), reject = the leg failed.
7. paid: post the hold and clear it to the gateway; a final gateway failure posts what was paid
   and voids the rest. A cancelled or rejected withdrawal voids the hold.

Workflow id: `withdrawal-<withdrawal id>`. WithdrawalState (search attribute) is upserted at the
step that changes it. Withdrawals started before a change replay through `workflow.patched`
(contract `Patch`): step 5 and the recorded rejection of step 4 are patches, proven by the
`withdrawal_*_before_rooms.json` histories (tests/workflows/test_replay_withdrawal.py).
Must never: do I/O or read configuration (timings come in the request).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import exceptions, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

# Passed through the sandbox, as in workflows/deposit.py: definitions only (no state, no I/O),
# which a new run would otherwise execute again.
with workflow.unsafe.imports_passed_through():
    from settlepay import search_attributes as sa
    from workflows.contracts.refusal import Refusal
    from workflows.contracts.withdrawal import (
        WORKFLOW,
        Activity,
        CancelRequest,
        Challenge,
        Decision,
        Event,
        LegState,
        LegStatus,
        Patch,
        PayoutLeg,
        Query,
        Release,
        ReviewDecision,
        ReviewPending,
        SecondFactorAnswer,
        SecondFactorAttempt,
        SecondFactorCode,
        Signal,
        Step,
        Update,
        WithdrawalRefusal,
        WithdrawalRequest,
        WithdrawalResult,
        WithdrawalState,
    )

# Gateway 5xx, timeouts and database hiccups are retried with the same idempotency keys: a
# payout that may have happened is never given up and voided by itself. A gateway step still
# failing at its deadline goes to an operator. Business refusals are non-retryable
# ApplicationErrors and stop at once.
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30))
STEP_TIMEOUT = timedelta(seconds=30)
POLL_SECONDS_MAX = 600.0

CHECKING, HELD = WithdrawalState.CHECKING, WithdrawalState.HELD
AWAITING_SECOND_FACTOR = WithdrawalState.AWAITING_SECOND_FACTOR
AWAITING_APPROVAL, PAYING = WithdrawalState.AWAITING_APPROVAL, WithdrawalState.PAYING
PAYOUT_REVIEW, PAID = WithdrawalState.PAYOUT_REVIEW, WithdrawalState.PAID
CANCELLED, REJECTED, FAILED = (WithdrawalState.CANCELLED, WithdrawalState.REJECTED,
                               WithdrawalState.FAILED)


@workflow.defn(name=WORKFLOW)
class WithdrawalWorkflow:
    def __init__(self) -> None:
        self._req: WithdrawalRequest | None = None
        self._state = CHECKING
        self._challenge: Challenge | None = None
        self._attempts_left = 0
        self._verified = False
        self._cancel: CancelRequest | None = None
        self._review: ReviewDecision | None = None   # the operator decision awaited now
        self._verifying = asyncio.Lock()   # one code checked at a time
        self._finished = False             # the result is decided: waiting updates may answer

    # --- the runbook -------------------------------------------------------------------------
    @workflow.run
    async def run(self, req: WithdrawalRequest) -> WithdrawalResult:
        self._req = req
        self._set_state(CHECKING, first=True)
        refusal = await self.check(req) or await self.hold(req)
        if refusal is not None:
            return await self.finish(req, REJECTED, refusal, held=False)
        self._set_state(HELD)

        if self._cancel is None:
            failure = await self.second_factor(req)
            if failure is not None:
                return await self.finish(req, CANCELLED, failure)
        if self._cancel is None and req.amount > req.approval_threshold:
            decision = await self.operator_approval(req)
            if decision is not None and decision.decision is not Decision.APPROVE:
                return await self.finish(req, REJECTED, Refusal(
                    WithdrawalRefusal.REJECTED_BY_OPERATOR,
                    decision.note or f"rejected by {decision.operator}"), actor=decision.operator)
        if self._cancel is not None:
            return await self.finish(req, CANCELLED, Refusal(
                WithdrawalRefusal.CANCELLED_BY_PLAYER,
                self._cancel.reason or "cancelled before payout"), actor=self._cancel.actor)

        self._set_state(PAYING)   # from here on the player can no longer cancel
        await self._record(Step(req.withdrawal_id, PAYING, "payout", "started"))
        debt = None
        if workflow.patched(Patch.DEBT_CHECKED_BEFORE_PAYOUT):
            debt = await self.check_debt(req)
        if debt is not None:
            return await self.finish(req, REJECTED, debt, settle_debt=True)
        paid, failure = await self.pay_out(req)
        if failure is not None:
            return await self.finish(req, FAILED, failure, paid_amount=paid)
        refused = await self._refusable(Activity.COMPLETE, req)
        if refused is not None:   # the hold was voided meanwhile: nothing left to post
            return await self.finish(req, FAILED, refused, held=False, paid_amount=paid)
        self._set_state(PAID)
        return await self._result(WithdrawalResult(req.withdrawal_id, PAID, paid_amount=paid))

    # --- the steps ---------------------------------------------------------------------------
    async def check(self, req: WithdrawalRequest) -> Refusal | None:
        """KYC, geolocation, exclusions, open debt, available cash: the first refusal wins."""
        return await self._refusable(Activity.CHECK, req)

    async def hold(self, req: WithdrawalRequest) -> Refusal | None:
        """Player cash -> pending withdrawal; refused when concurrent withdrawals took the cash
        or the hold is no longer pending."""
        return await self._refusable(Activity.HOLD, req)

    async def second_factor(self, req: WithdrawalRequest) -> Refusal | None:
        """Challenge the player, then wait for a right code, the last wrong one, a cancel or the
        deadline. None when the code was right (or the player cancelled)."""
        # The workflow takes codes before the database says awaiting_2fa (written by the
        # activity), so a client that reads that state and answers at once is never refused.
        self._attempts_left = req.second_factor_max_attempts
        self._set_state(AWAITING_SECOND_FACTOR)
        self._challenge = await self._execute(Activity.START_SECOND_FACTOR, req,
                                              result_type=Challenge)
        try:
            await workflow.wait_condition(
                lambda: self._verified or self._attempts_left == 0 or self._cancel is not None,
                timeout=timedelta(seconds=req.second_factor_timeout_seconds))
        except TimeoutError:
            # Stop taking codes before the cancellation is written (a late right code loses).
            self._state = CANCELLED
            return Refusal(WithdrawalRefusal.SECOND_FACTOR_EXPIRED,
                           "no second-factor code within the time allowed")
        if self._verified:
            return None
        if self._attempts_left == 0:
            self._state = CANCELLED
            return Refusal(WithdrawalRefusal.SECOND_FACTOR_FAILED,
                           f"{req.second_factor_max_attempts} wrong second-factor codes")
        return None   # cancel requested: handled by the runbook

    async def operator_approval(self, req: WithdrawalRequest) -> ReviewDecision | None:
        """Wait (without a deadline) for an operator's decision; None if the player cancels."""
        # Ready for the signal before the database shows the withdrawal waiting for it.
        self._review = None
        self._set_state(AWAITING_APPROVAL, review=ReviewPending.APPROVAL)
        await self._record(Step(req.withdrawal_id, AWAITING_APPROVAL, "approval", "requested",
                                {"threshold": req.approval_threshold},
                                event=Event.APPROVAL_REQUIRED))
        await workflow.wait_condition(lambda: self._review is not None
                                      or self._cancel is not None)
        self._set_state(self._state, review_taken=True)
        decision = self._review
        # Before the patch only an approval was recorded (a rejection by the release).
        if decision is not None and (decision.decision is Decision.APPROVE or workflow.patched(
                Patch.REJECTION_RECORDED_BY_WORKFLOW)):
            await self._record_review(req, decision, AWAITING_APPROVAL)
        return decision

    async def check_debt(self, req: WithdrawalRequest) -> Refusal | None:
        """Open debt again, just before the payout (a clawback while the cash was held)."""
        return await self._refusable(Activity.CHECK_DEBT, req)

    async def pay_out(self, req: WithdrawalRequest) -> tuple[int, Refusal | None]:
        """Every leg of the closed-loop plan, in order, each until the gateway confirms it.
        (amount paid, None) when all are confirmed, else (amount paid so far, why it stopped)."""
        legs = await self._execute(Activity.PLAN_PAYOUTS, req, result_type=list[PayoutLeg])
        paid = 0
        for leg in legs:
            status = await self.pay_leg(req, leg)
            if status.state is not LegState.CONFIRMED:
                return paid, Refusal(WithdrawalRefusal.PAYOUT_FAILED,
                                     f"{leg.method} {leg.n} failed: "
                                     f"{status.failure or 'gateway refused it'}")
            paid += leg.amount
        return paid, None

    async def pay_leg(self, req: WithdrawalRequest, leg: PayoutLeg) -> LegStatus:
        """Send the leg, then ask again (waiting longer each time) while it is pending."""
        status = await self.send_leg(req, leg)
        wait = req.payout_poll_seconds
        while status.state is LegState.PENDING:
            await workflow.sleep(wait)
            wait = min(wait * 2, POLL_SECONDS_MAX)
            status = await self._execute(Activity.REFRESH_PAYOUT, leg, status.gateway_ref,
                                         result_type=LegStatus)
        return status

    async def send_leg(self, req: WithdrawalRequest, leg: PayoutLeg) -> LegStatus:
        """Create the leg at the gateway, retried until `gateway_deadline_seconds`; past it an
        operator decides: try again, or give the leg up (it failed)."""
        while True:
            try:
                return await self._execute(
                    Activity.SEND_PAYOUT, leg, result_type=LegStatus,
                    schedule_to_close=timedelta(seconds=req.gateway_deadline_seconds))
            except ActivityError as error:
                refusal = Refusal.of(error)
                if refusal is not None:
                    return LegStatus(leg.n, LegState.FAILED, None, refusal.reason)
                # Past the deadline Temporal answers a timeout, or the last failure when the
                # next retry would have started after it.
                if error.retry_state is not exceptions.RetryState.TIMEOUT \
                        and not isinstance(error.cause, exceptions.TimeoutError):
                    raise
            decision = await self.payout_review(req, leg)
            if decision.decision is not Decision.APPROVE:
                return LegStatus(leg.n, LegState.FAILED, None,
                                 f"given up by {decision.operator}"
                                 + (f": {decision.note}" if decision.note else ""))

    async def payout_review(self, req: WithdrawalRequest, leg: PayoutLeg) -> ReviewDecision:
        """Wait for an operator's decision on a leg whose gateway step passed its deadline."""
        self._review = None
        self._set_state(PAYOUT_REVIEW, review=ReviewPending.PAYOUT)
        await self._record(Step(req.withdrawal_id, PAYOUT_REVIEW, "payout", "review_requested",
                                {"n": leg.n, "method": leg.method,
                                 "reason": "the gateway did not answer before the deadline"},
                                event=Event.PAYOUT_REVIEW_REQUIRED))
        await workflow.wait_condition(lambda: self._review is not None)
        decision = self._review
        assert decision is not None
        self._set_state(PAYING, review_taken=True)
        await self._record_review(req, decision, PAYING, n=leg.n)
        return decision

    async def finish(self, req: WithdrawalRequest, state: WithdrawalState, why: Refusal, *,
                     held: bool = True, paid_amount: int = 0, actor: str | None = None,
                     settle_debt: bool = False) -> WithdrawalResult:
        """Cancelled, rejected or failed: void the hold (or post what was paid) and say why."""
        self._state = state
        await self._execute(Activity.RELEASE, Release(
            req.withdrawal_id, state, why.code, why.reason, actor or f"workflow:{req.workflow_id}",
            held=held, paid_amount=paid_amount, gateway_provider=req.gateway_provider,
            settle_debt=settle_debt))
        self._set_state(state)
        return await self._result(WithdrawalResult(req.withdrawal_id, state, why.code,
                                                   why.reason, paid_amount))

    # --- updates, signals, queries -------------------------------------------------------------
    @workflow.update(name=Update.SUBMIT_SECOND_FACTOR)
    async def submit_second_factor(self, submission: SecondFactorCode) -> SecondFactorAnswer:
        req = self._req
        assert req is not None
        # A code may come while the challenge is still being sent: check it once it is.
        await workflow.wait_condition(lambda: self._challenge is not None
                                      or self._state != AWAITING_SECOND_FACTOR)
        async with self._verifying:
            if self._state != AWAITING_SECOND_FACTOR or self._verified \
                    or self._attempts_left == 0:
                raise _update_error(WithdrawalRefusal.SECOND_FACTOR_NOT_EXPECTED,
                                    "the withdrawal is no longer waiting for a code",
                                    {"state": self._state})
            assert self._challenge is not None
            ok = await self._execute(Activity.VERIFY_SECOND_FACTOR, SecondFactorAttempt(
                req.withdrawal_id, req.player_id, self._challenge.method, submission.code,
                self._attempts_left - 1), result_type=bool)
            if self._state != AWAITING_SECOND_FACTOR:   # the deadline passed meanwhile
                raise _update_error(WithdrawalRefusal.SECOND_FACTOR_NOT_EXPECTED,
                                    "the code came too late", {"state": self._state})
            if ok:
                self._verified = True
                return SecondFactorAnswer(True, self._state, self._attempts_left)
            self._attempts_left -= 1
            if self._attempts_left == 0:
                raise _update_error(WithdrawalRefusal.SECOND_FACTOR_FAILED,
                                    "wrong code: no attempts left, the withdrawal is cancelled",
                                    {"attempts_left": 0})
            raise _update_error(WithdrawalRefusal.SECOND_FACTOR_INVALID,
                                f"wrong code: {self._attempts_left} attempts left",
                                {"attempts_left": self._attempts_left})

    @submit_second_factor.validator
    def _validate_second_factor(self, submission: SecondFactorCode) -> None:
        # Rejected here, an update leaves no trace in history (cheap to refuse junk).
        if not (submission.code.isdigit() and len(submission.code) == 6):
            raise ApplicationError("a code is 6 digits",
                                   type=str(WithdrawalRefusal.SECOND_FACTOR_MALFORMED))
        if self._state != AWAITING_SECOND_FACTOR or self._verified or self._attempts_left == 0:
            raise ApplicationError(f"the withdrawal is {self._state}, not waiting for a code",
                                   {"state": self._state},
                                   type=str(WithdrawalRefusal.SECOND_FACTOR_NOT_EXPECTED))

    @workflow.update(name=Update.CANCEL)
    async def cancel(self, request: CancelRequest) -> str:
        """The player cancels before the payout: answers the final state (hold voided)."""
        if self._cancel is None:
            self._cancel = request
        await workflow.wait_condition(lambda: self._state.final and self._finished)
        return self._state

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if not self._state.cancellable:
            raise ApplicationError(f"the withdrawal is {self._state}: too late to cancel",
                                   {"state": self._state},
                                   type=str(WithdrawalRefusal.NOT_CANCELLABLE))

    @workflow.signal(name=Signal.REVIEW)
    def review(self, decision: ReviewDecision) -> None:
        """An operator's decision; taken only while one is awaited (the first one wins)."""
        if self._state in (AWAITING_APPROVAL, PAYOUT_REVIEW) and self._review is None:
            self._review = decision

    @workflow.query(name=Query.STATE)
    def state(self) -> str:
        return self._state

    # --- helpers -----------------------------------------------------------------------------
    async def _result(self, result: WithdrawalResult) -> WithdrawalResult:
        self._finished = True
        # Updates still running (a cancel waiting for the final state) answer before the end.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _record(self, step: Step) -> None:
        await self._execute(Activity.RECORD, step)

    async def _record_review(self, req: WithdrawalRequest, decision: ReviewDecision,
                             state: WithdrawalState, **detail: Any) -> None:
        """The operator's decision, audited as `withdrawal.review.<decision>` once taken."""
        await self._record(Step(req.withdrawal_id, state, "review", decision.decision,
                                {"operator": decision.operator, "note": decision.note, **detail},
                                actor=decision.operator))

    async def _refusable(self, activity: Activity, arg: object) -> Refusal | None:
        try:
            await self._execute(activity, arg)
        except ActivityError as error:
            refusal = Refusal.of(error)
            if refusal is None:
                raise
            return refusal
        return None

    async def _execute(self, activity: Activity, *args: object, result_type: Any = None,
                       schedule_to_close: timedelta | None = None) -> Any:
        return await workflow.execute_activity(
            activity, args=list(args), result_type=result_type,
            start_to_close_timeout=STEP_TIMEOUT, schedule_to_close_timeout=schedule_to_close,
            retry_policy=RETRY)

    def _set_state(self, state: WithdrawalState, *, first: bool = False,
                   review: ReviewPending | None = None, review_taken: bool = False) -> None:
        """The state, and in the same upsert `ReviewPending` set while an operator's decision is
        awaited (`review`) or unset once it is taken (`review_taken`)."""
        self._state = state
        workflow.logger.info("withdrawal step", extra={"withdrawal_state": str(state)})
        req = self._req
        if req is None or not req.index_search_attributes:
            return
        updates = [sa.WITHDRAWAL_STATE.value_set(state.search_value)]
        if first:
            updates += [sa.PLAYER_ID.value_set(req.player_id), sa.AMOUNT.value_set(req.amount),
                        sa.CURRENCY.value_set(req.currency)]
        if review is not None:
            updates.append(sa.REVIEW_PENDING.value_set(review))
        elif review_taken:
            updates.append(sa.REVIEW_PENDING.value_unset())
        workflow.upsert_search_attributes(updates)


def _update_error(code: WithdrawalRefusal, message: str,
                  details: dict[str, Any]) -> ApplicationError:
    return ApplicationError(message, details, type=str(code), non_retryable=True)
