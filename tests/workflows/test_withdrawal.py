"""The withdrawal workflow's runbook, one test per branch, on the time-skipping server with stub
activities registered under the real names (no PostgreSQL, no gateway; the second factor's ten
minutes are skipped). The stubs play the outside world and record what they were asked; the
test plays the player (codes, cancel) and the operator (review decisions)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.support.factories import wait_until
from workflows.contracts.refusal import Refusal
from workflows.contracts.withdrawal import (
    WORKFLOW,
    Activity,
    CancelRequest,
    Challenge,
    Decision,
    LegMethod,
    LegState,
    LegStatus,
    PayoutLeg,
    Query,
    Release,
    ReviewDecision,
    SecondFactorAnswer,
    SecondFactorAttempt,
    SecondFactorCode,
    SecondFactorMethod,
    Signal,
    Step,
    Update,
    WithdrawalRequest,
    WithdrawalResult,
    WithdrawalState,
)
from workflows.withdrawal import WithdrawalWorkflow

RIGHT, WRONG = "123456", "654321"
QUEUE = "withdrawal-runbook"


@dataclass
class World:
    """What the stubs answer, and what they were asked."""

    check: Refusal | None = None
    hold: Refusal | None = None
    debt: Refusal | None = None
    complete: Refusal | None = None
    legs: list[tuple[LegMethod, int]] = field(default_factory=lambda: [(LegMethod.PAYOUT, 0)])
    # Per leg n: the gateway's answers to send, then to each refresh, in order ("5xx": the send
    # fails as an unavailable gateway does, retried by Temporal).
    answers: dict[int, list[str]] = field(default_factory=dict)
    sends: list[int] = field(default_factory=list)
    steps: list[tuple[str, str, str]] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    completed: int = 0
    verified_codes: list[str] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=Activity.CHECK)
        async def check(req: WithdrawalRequest) -> None:
            if self.check is not None:
                raise self.check.as_error()

        @activity.defn(name=Activity.HOLD)
        async def hold(req: WithdrawalRequest) -> None:
            if self.hold is not None:
                raise self.hold.as_error()

        @activity.defn(name=Activity.START_SECOND_FACTOR)
        async def start_second_factor(req: WithdrawalRequest) -> Challenge:
            return Challenge(SecondFactorMethod.CODE, "player@example.test")

        @activity.defn(name=Activity.VERIFY_SECOND_FACTOR)
        async def verify_second_factor(attempt: SecondFactorAttempt) -> bool:
            self.verified_codes.append(attempt.code)
            return attempt.code == RIGHT

        @activity.defn(name=Activity.RECORD)
        async def record(step: Step) -> None:
            self.steps.append((step.step, step.outcome, step.actor or "workflow"))

        @activity.defn(name=Activity.CHECK_DEBT)
        async def check_debt(req: WithdrawalRequest) -> None:
            if self.debt is not None:
                raise self.debt.as_error()

        @activity.defn(name=Activity.PLAN_PAYOUTS)
        async def plan_payouts(req: WithdrawalRequest) -> list[PayoutLeg]:
            legs, left = [], req.amount
            for n, (method, amount) in enumerate(self.legs, start=1):
                amount = amount or left
                left -= amount
                legs.append(PayoutLeg(req.withdrawal_id, n, method, amount, req.currency,
                                      req.key(f"{method}:{n}")))
            return legs

        @activity.defn(name=Activity.SEND_PAYOUT)
        async def send_payout(leg: PayoutLeg) -> LegStatus:
            self.sends.append(leg.n)
            return self._answer(leg)

        @activity.defn(name=Activity.REFRESH_PAYOUT)
        async def refresh_payout(leg: PayoutLeg, gateway_ref: str) -> LegStatus:
            return self._answer(leg)

        @activity.defn(name=Activity.COMPLETE)
        async def complete(req: WithdrawalRequest) -> None:
            if self.complete is not None:
                raise self.complete.as_error()
            self.completed += 1

        @activity.defn(name=Activity.RELEASE)
        async def release(rel: Release) -> None:
            self.releases.append(rel)

        return [check, hold, start_second_factor, verify_second_factor, record, check_debt,
                plan_payouts, send_payout, refresh_payout, complete, release]

    def _answer(self, leg: PayoutLeg) -> LegStatus:
        queue = self.answers.get(leg.n) or ["confirmed"]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer == "5xx":
            raise ApplicationError("the gateway answered 503", type="GatewayUnavailable")
        return LegStatus(leg.n, LegState(answer), f"ref_{leg.n}",
                         "account_closed" if answer == "failed" else None)


def request(amount: int = 1_000, **overrides: Any) -> WithdrawalRequest:
    withdrawal_id = f"wd_{uuid.uuid4().hex[:12]}"
    return WithdrawalRequest(**{
        "withdrawal_id": withdrawal_id, "player_id": "ply_runbook", "partner_id": "partner-t",
        "amount": amount, "currency": "USD", "actor": "api_key:test",
        "approval_threshold": 5_000, "payout_poll_seconds": 1.0,
        "index_search_attributes": False, **overrides})


async def run(env: WorkflowEnvironment, world: World, req: WithdrawalRequest,
              player: Callable[[WorkflowHandle[Any, Any]], Any] | None = None) -> WithdrawalResult:
    """Run the withdrawal to its end; `player(handle)` acts while it runs."""
    async with Worker(env.client, task_queue=QUEUE, workflows=[WithdrawalWorkflow],
                      activities=world.activities()):
        handle = await env.client.start_workflow(WORKFLOW, req, id=req.workflow_id,
                                                 task_queue=QUEUE, result_type=WithdrawalResult)
        if player is not None:
            await player(handle)
        return await handle.result()


async def reaches(handle: WorkflowHandle[Any, Any], state: WithdrawalState) -> None:
    async def probe() -> bool:
        return await handle.query(Query.STATE, result_type=str) == state
    await wait_until(probe)


async def code(handle: WorkflowHandle[Any, Any], value: str) -> SecondFactorAnswer:
    return await handle.execute_update(Update.SUBMIT_SECOND_FACTOR, SecondFactorCode(value),
                                       result_type=SecondFactorAnswer)


async def right_code(handle: WorkflowHandle[Any, Any]) -> None:
    await reaches(handle, WithdrawalState.AWAITING_SECOND_FACTOR)
    assert (await code(handle, RIGHT)).verified


def review(decision: Decision, at: WithdrawalState) -> Callable[..., Any]:
    async def operator(handle: WorkflowHandle[Any, Any]) -> None:
        await right_code(handle)
        await reaches(handle, at)
        await handle.signal(Signal.REVIEW, ReviewDecision(decision, "operator:ada", "checked"))
    return operator


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def test_a_refused_check_rejects_without_a_hold(env):
    world = World(check=Refusal("kyc_not_verified", "KYC is pending"))
    result = await run(env, world, request())
    assert (result.state, result.reason_code) == ("rejected", "kyc_not_verified")
    assert [(r.state, r.held, r.reason_code) for r in world.releases] == [
        ("rejected", False, "kyc_not_verified")]


async def test_a_refused_hold_rejects_and_releases_nothing(env):
    world = World(hold=Refusal("insufficient_funds", "the cash is gone"))
    result = await run(env, world, request())
    assert (result.state, result.reason_code) == ("rejected", "insufficient_funds")
    assert [(r.held, r.paid_amount) for r in world.releases] == [(False, 0)]
    assert world.sends == []


async def test_the_right_code_pays_out_and_posts_the_hold(env):
    world = World()
    result = await run(env, world, request(1_000), right_code)
    assert (result.state, result.paid_amount) == ("paid", 1_000)
    assert world.completed == 1 and world.releases == [] and world.sends == [1]
    assert ("payout", "started", "workflow") in world.steps


async def test_a_wrong_code_leaves_attempts_and_the_right_one_still_pays(env):
    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await reaches(handle, WithdrawalState.AWAITING_SECOND_FACTOR)
        with pytest.raises(WorkflowUpdateFailedError) as wrong:
            await code(handle, WRONG)
        assert isinstance(wrong.value.cause, ApplicationError)
        assert wrong.value.cause.type == "second_factor_invalid"
        assert wrong.value.cause.details[0] == {"attempts_left": 2}
        assert (await code(handle, RIGHT)).attempts_left == 2

    world = World()
    result = await run(env, world, request(), player)
    assert result.state == "paid" and world.verified_codes == [WRONG, RIGHT]


async def test_three_wrong_codes_cancel_and_void_the_hold(env):
    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await reaches(handle, WithdrawalState.AWAITING_SECOND_FACTOR)
        types = []
        for _ in range(3):
            with pytest.raises(WorkflowUpdateFailedError) as wrong:
                await code(handle, WRONG)
            assert isinstance(wrong.value.cause, ApplicationError)
            types.append(wrong.value.cause.type)
        assert types == ["second_factor_invalid", "second_factor_invalid",
                         "second_factor_failed"]

    world = World()
    result = await run(env, world, request(), player)
    assert (result.state, result.reason_code) == ("cancelled", "second_factor_failed")
    assert [(r.state, r.held, r.paid_amount) for r in world.releases] == [("cancelled", True, 0)]
    assert world.sends == []


async def test_no_code_before_the_deadline_cancels(env):
    world = World()
    result = await run(env, world, request(second_factor_timeout_seconds=600))
    assert (result.state, result.reason_code) == ("cancelled", "second_factor_expired")
    assert [(r.state, r.held) for r in world.releases] == [("cancelled", True)]


async def test_a_malformed_code_is_refused_by_the_validator_and_costs_no_attempt(env):
    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await reaches(handle, WithdrawalState.AWAITING_SECOND_FACTOR)
        with pytest.raises(WorkflowUpdateFailedError) as malformed:
            await code(handle, "12ab56")
        assert isinstance(malformed.value.cause, ApplicationError)
        assert malformed.value.cause.type == "second_factor_malformed"
        assert (await code(handle, RIGHT)).attempts_left == 3

    world = World()
    assert (await run(env, world, request(), player)).state == "paid"
    assert world.verified_codes == [RIGHT]


async def test_above_the_threshold_an_operator_approves_and_it_pays(env):
    world = World()
    result = await run(env, world, request(9_000),
                       review(Decision.APPROVE, WithdrawalState.AWAITING_APPROVAL))
    assert (result.state, result.paid_amount) == ("paid", 9_000)
    assert ("approval", "requested", "workflow") in world.steps
    assert ("review", "approve", "operator:ada") in world.steps


async def test_above_the_threshold_an_operator_rejects_and_the_hold_is_voided(env):
    world = World()
    result = await run(env, world, request(9_000),
                       review(Decision.REJECT, WithdrawalState.AWAITING_APPROVAL))
    assert (result.state, result.reason_code, result.reason) == (
        "rejected", "rejected_by_operator", "checked")
    assert [(r.actor, r.held) for r in world.releases] == [("operator:ada", True)]
    assert ("review", "reject", "operator:ada") in world.steps
    assert world.sends == []


async def test_refunds_go_first_then_the_payout_each_until_confirmed(env):
    world = World(legs=[(LegMethod.REFUND, 600), (LegMethod.PAYOUT, 0)],
                  answers={1: ["pending", "pending", "confirmed"], 2: ["confirmed"]})
    result = await run(env, world, request(1_000), right_code)
    assert (result.state, result.paid_amount) == ("paid", 1_000)
    assert world.sends == [1, 2] and world.completed == 1


async def test_a_failed_payout_posts_what_the_refund_paid_and_voids_the_rest(env):
    world = World(legs=[(LegMethod.REFUND, 600), (LegMethod.PAYOUT, 0)],
                  answers={1: ["confirmed"], 2: ["pending", "failed"]})
    result = await run(env, world, request(1_000), right_code)
    assert (result.state, result.reason_code, result.paid_amount) == ("failed", "payout_failed",
                                                                      600)
    assert [(r.state, r.paid_amount) for r in world.releases] == [("failed", 600)]
    assert world.completed == 0


async def test_the_player_cancels_before_the_payout(env):
    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await reaches(handle, WithdrawalState.AWAITING_SECOND_FACTOR)
        final = await handle.execute_update(Update.CANCEL, CancelRequest("api_key:p", "no"),
                                            result_type=str)
        assert final == "cancelled"

    world = World()
    result = await run(env, world, request(), player)
    assert (result.state, result.reason_code) == ("cancelled", "cancelled_by_player")
    assert [(r.actor, r.held) for r in world.releases] == [("api_key:p", True)]


async def test_cancel_is_refused_once_the_payout_began(env):
    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await right_code(handle)
        await reaches(handle, WithdrawalState.PAYOUT_REVIEW)
        with pytest.raises(WorkflowUpdateFailedError) as late:
            await handle.execute_update(Update.CANCEL, CancelRequest("api_key:p"),
                                        result_type=str)
        assert isinstance(late.value.cause, ApplicationError)
        assert late.value.cause.type == "withdrawal_not_cancellable"
        await handle.signal(Signal.REVIEW, ReviewDecision(Decision.REJECT, "operator:ada"))

    world = World(answers={1: ["5xx"]})
    result = await run(env, world, request(gateway_deadline_seconds=3.0), player)
    assert result.state == "failed"


async def test_open_debt_before_the_payout_rejects_and_repays_the_debt_from_the_hold(env):
    world = World(debt=Refusal("open_debt", "the player owes 300 USD minor units"))
    result = await run(env, world, request(), right_code)
    assert (result.state, result.reason_code) == ("rejected", "open_debt")
    assert [(r.held, r.settle_debt) for r in world.releases] == [(True, True)]
    assert world.sends == []


async def test_a_gateway_step_past_its_deadline_waits_for_an_operator_who_retries_it(env):
    world = World(answers={1: ["5xx"]})      # the gateway answers 5xx until the operator looks
    sent_before_review: list[int] = []

    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await right_code(handle)
        await reaches(handle, WithdrawalState.PAYOUT_REVIEW)
        sent_before_review.extend(world.sends)
        world.answers[1] = ["confirmed"]
        await handle.signal(Signal.REVIEW, ReviewDecision(Decision.APPROVE, "operator:ada"))

    result = await run(env, world, request(gateway_deadline_seconds=3.0), player)
    assert (result.state, result.paid_amount) == ("paid", 1_000)
    assert len(sent_before_review) >= 2          # retried until the deadline, then reviewed
    assert len(world.sends) == len(sent_before_review) + 1
    assert ("payout", "review_requested", "workflow") in world.steps
    assert ("review", "approve", "operator:ada") in world.steps


async def test_a_gateway_step_past_its_deadline_given_up_by_an_operator_fails(env):
    world = World(answers={1: ["5xx"]})
    result = await run(env, world, request(gateway_deadline_seconds=3.0),
                       review(Decision.REJECT, WithdrawalState.PAYOUT_REVIEW))
    assert (result.state, result.reason_code) == ("failed", "payout_failed")
    assert "given up by operator:ada" in (result.reason or "")
    assert [(r.state, r.paid_amount) for r in world.releases] == [("failed", 0)]


async def test_a_hold_voided_before_completion_is_never_posted(env):
    world = World(complete=Refusal("hold_not_pending", "the hold was voided"))
    result = await run(env, world, request(), right_code)
    assert (result.state, result.reason_code) == ("failed", "hold_not_pending")
    assert [(r.held, r.paid_amount) for r in world.releases] == [(False, 1_000)]


async def test_a_review_signal_outside_a_review_is_ignored(env):
    async def player(handle: WorkflowHandle[Any, Any]) -> None:
        await reaches(handle, WithdrawalState.AWAITING_SECOND_FACTOR)
        await handle.signal(Signal.REVIEW, ReviewDecision(Decision.REJECT, "operator:early"))
        assert (await code(handle, RIGHT)).verified
        await reaches(handle, WithdrawalState.AWAITING_APPROVAL)
        await handle.signal(Signal.REVIEW, ReviewDecision(Decision.APPROVE, "operator:ada"))

    world = World()
    result = await run(env, world, request(9_000), player)
    assert result.state == "paid"
    assert [step for step in world.steps if step[0] == "review"] == [
        ("review", "approve", "operator:ada")]
