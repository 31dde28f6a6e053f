"""The deposit workflow's runbook, one test per branch, on the time-skipping server with stub
activities registered under the real names (no PostgreSQL, no gateway; the half hour of the
timeout and the days of the processing limit are skipped). The stubs play the gateway and
record what they were asked; the test plays Stripe's webhooks (signals)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from settlepay import search_attributes
from tests.support.factories import wait_until
from workflows.contracts.deposit import (
    PAYMENT_EVENT_SIGNAL,
    STATE_QUERY,
    WORKFLOW,
    Activity,
    Credit,
    DepositRequest,
    DepositResult,
    DepositStatus,
    Failure,
    GatewayStatus,
    Payment,
    PaymentEvent,
    Review,
    ReviewReason,
    workflow_id,
)
from workflows.contracts.refusal import Refusal
from workflows.deposit import DepositWorkflow

PI = "pi_stub"
TIMEOUT, PROCESSING_LIMIT = 1_800.0, 259_200.0
TRANSACTION = 4242

Answer = Payment | Refusal | Exception


def payment(status: str, **fields: Any) -> Payment:
    return Payment(PI, status, **fields)


SUCCEEDED = payment(GatewayStatus.SUCCEEDED, charge="ch_stub")
PROCESSING = payment(GatewayStatus.PROCESSING)
REQUIRES_ACTION = payment(GatewayStatus.REQUIRES_ACTION,
                          next_action={"type": "redirect_to_url"})
CANCELED = payment(GatewayStatus.CANCELED)
DECLINED = Refusal("generic_decline", "Your card was declined.")


@dataclass
class World:
    """What the stubs answer, and what they were asked. A list of answers is used in order,
    its last answer repeated."""

    gate: Refusal | None = None
    created: Answer = field(default_factory=lambda: SUCCEEDED)
    polled: list[Answer] = field(default_factory=lambda: [PROCESSING])
    cancelled: Answer = field(default_factory=lambda: CANCELED)
    reviewed: DepositStatus = DepositStatus.REVIEW
    on_create: Callable[[DepositRequest], Awaitable[None]] | None = None
    on_cancel: Callable[[str], Awaitable[None]] | None = None     # gets the deposit id
    creates: int = 0
    polls: int = 0
    cancels: int = 0
    polls_before_cancel: int | None = None
    credits: list[Credit] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=Activity.CHECK_GATES)
        async def check_gates(req: DepositRequest) -> None:
            if self.gate is not None:
                raise self.gate.as_error()

        @activity.defn(name=Activity.CREATE_PAYMENT)
        async def create_payment(req: DepositRequest) -> Payment:
            self.creates += 1
            if self.on_create is not None:
                await self.on_create(req)
            return _answer(self.created, details=(PI,))

        @activity.defn(name=Activity.RETRIEVE_PAYMENT)
        async def retrieve_payment(payment_intent: str) -> Payment:
            self.polls += 1
            return _answer(self.polled[min(self.polls, len(self.polled)) - 1])

        @activity.defn(name=Activity.CANCEL_PAYMENT)
        async def cancel_payment(deposit_id: str, payment_intent: str) -> Payment:
            self.cancels += 1
            if self.polls_before_cancel is None:
                self.polls_before_cancel = self.polls
            if self.on_cancel is not None:
                await self.on_cancel(deposit_id)
            return _answer(self.cancelled)

        # The database steps are local activities, which run at least once: again when the
        # workflow task that ran one fails (e.g. a signal came meanwhile). Like the commands
        # (ledger key, row state), the same request again is no second effect; another one is.
        @activity.defn(name=Activity.CREDIT_PLAYER)
        async def credit_player(credit: Credit) -> int:
            if credit not in self.credits:
                self.credits.append(credit)
            return TRANSACTION

        @activity.defn(name=Activity.FAIL)
        async def fail(failure: Failure) -> None:
            if failure not in self.failures:
                self.failures.append(failure)

        @activity.defn(name=Activity.REVIEW)
        async def review(review: Review) -> str:
            if review not in self.reviews:
                self.reviews.append(review)
            return str(self.reviewed)

        return [check_gates, create_payment, retrieve_payment, cancel_payment, credit_player,
                fail, review]


def _answer(answer: Answer, details: tuple[Any, ...] = ()) -> Payment:
    if isinstance(answer, Refusal):
        raise answer.as_error(*details)
    if isinstance(answer, Exception):
        raise answer
    return Payment(**vars(answer))   # a copy: the workflow may fill in failure fields


def request(**timings: Any) -> DepositRequest:
    deposit_id = f"dep_{uuid.uuid4().hex[:24]}"
    return DepositRequest(deposit_id, f"ply_{uuid.uuid4().hex[:12]}", "partner-stub", 2_500,
                          "USD", "pm_card_visa", "api_key:test",
                          **{"webhook_wait_seconds": 30.0, "poll_interval_seconds": 10.0,
                             "timeout_seconds": TIMEOUT,
                             "processing_limit_seconds": PROCESSING_LIMIT, **timings})


Webhooks = Callable[[WorkflowHandle[Any, DepositResult]], Awaitable[None]]


async def run(env: WorkflowEnvironment, world: World, req: DepositRequest | None = None,
              webhooks: Webhooks | None = None) -> tuple[DepositResult, str | None]:
    """Run one deposit to its end; (result, its PaymentState search value)."""
    req = req or request()
    queue = f"deposit-runbook-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[DepositWorkflow],
                      activities=world.activities()):
        handle = await env.client.start_workflow(WORKFLOW, req, id=workflow_id(req.deposit_id),
                                                 task_queue=queue, result_type=DepositResult)
        if webhooks is not None:
            await webhooks(handle)
        result = await handle.result()
        described = await handle.describe()
    state = described.typed_search_attributes.get(search_attributes.PAYMENT_STATE)
    return result, state


async def waits_in(handle: WorkflowHandle[Any, Any], status: DepositStatus) -> None:
    """Until the workflow says it waits in `status` (a query: no time is skipped meanwhile)."""
    async def probe() -> bool:
        return await handle.query(STATE_QUERY) == status
    await wait_until(probe)


def event(result: Payment, event_id: str | None = None) -> PaymentEvent:
    return PaymentEvent(event_id or f"evt_{uuid.uuid4().hex[:12]}",
                        f"payment_intent.{result.status}", result)


@pytest.fixture(scope="module")
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The time-skipping server with the search attributes the workflow upserts (it knows
    none of them by itself)."""
    kinds = {"KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
             "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT}
    wanted = {key.name: kinds[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
              for key in search_attributes.ALL}
    client = time_skipping_env.client
    try:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=client.namespace, search_attributes=wanted))
    except Exception as error:   # registered by an earlier module of this session
        assert "already" in str(error).lower(), error
    return time_skipping_env


# --- the runbook, branch by branch -----------------------------------------------------------

async def test_a_gate_refusal_fails_the_deposit_without_a_payment(env):
    world = World(gate=Refusal("deposit_limit_exceeded", "the daily limit is 10000"))
    result, state = await run(env, world)
    assert (result.status, result.failure_code) == (DepositStatus.FAILED, "deposit_limit_exceeded")
    assert world.creates == 0 and world.credits == []
    assert [(f.code, f.payment_intent) for f in world.failures] == [
        ("deposit_limit_exceeded", None)]
    assert state == "FAILED"


async def test_a_card_declined_at_once_fails_with_the_decline_code(env):
    world = World(created=DECLINED)
    result, state = await run(env, world)
    assert (result.status, result.failure_code, result.payment_intent) == (
        DepositStatus.FAILED, "generic_decline", PI)
    assert [(f.code, f.reason, f.payment_intent) for f in world.failures] == [
        ("generic_decline", "Your card was declined.", PI)]
    assert world.credits == [] and world.polls == 0 and state == "FAILED"


async def test_a_payment_succeeded_at_once_is_credited_without_waiting(env):
    world = World()
    req = request()
    result, state = await run(env, world, req)
    assert (result.status, result.ledger_transaction_id) == (DepositStatus.SUCCEEDED, TRANSACTION)
    assert [(c.deposit_id, c.amount, c.currency, c.payment_intent, c.charge)
            for c in world.credits] == [(req.deposit_id, 2_500, "USD", PI, "ch_stub")]
    assert world.polls == 0 and world.cancels == 0 and world.failures == []
    assert state == "SUCCEEDED"


async def test_three_d_secure_then_the_success_webhook_credits(env):
    world = World(created=REQUIRES_ACTION)

    async def stripe(handle: WorkflowHandle[Any, DepositResult]) -> None:
        await waits_in(handle, DepositStatus.REQUIRES_ACTION)
        await handle.signal(PAYMENT_EVENT_SIGNAL, event(SUCCEEDED))

    result, state = await run(env, world, webhooks=stripe)
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert world.polls == 0 and world.cancels == 0 and state == "SUCCEEDED"


async def test_without_a_webhook_polling_finds_the_verdict(env):
    world = World(created=PROCESSING, polled=[PROCESSING, PROCESSING, SUCCEEDED])
    result, _ = await run(env, world)
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert world.polls == 3 and world.cancels == 0


async def test_a_failure_found_by_polling_fails_the_deposit_with_its_code(env):
    declined = payment(GatewayStatus.REQUIRES_PAYMENT_METHOD, failure_code="insufficient_funds",
                       failure_reason="Your card has insufficient funds.")
    world = World(created=PROCESSING, polled=[declined])
    result, _ = await run(env, world)
    assert (result.status, result.failure_code) == (DepositStatus.FAILED, "insufficient_funds")
    assert world.credits == [] and len(world.failures) == 1


async def test_a_payment_never_finished_is_cancelled_at_the_timeout_and_fails_expired(env):
    world = World(created=REQUIRES_ACTION, polled=[REQUIRES_ACTION], cancelled=CANCELED)
    result, state = await run(env, world)
    assert (result.status, result.failure_code, result.failure_reason) == (
        DepositStatus.FAILED, "expired", "the payment did not complete in time")
    assert world.cancels == 1 and world.credits == [] and world.reviews == []
    assert [(f.code, f.payment_intent) for f in world.failures] == [("expired", PI)]
    assert state == "FAILED"


async def test_a_payment_that_succeeds_while_being_cancelled_is_credited(env):
    world = World(created=PROCESSING, polled=[PROCESSING], cancelled=SUCCEEDED)
    result, _ = await run(env, world)
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert world.failures == []


async def test_a_payment_still_processing_at_the_timeout_keeps_the_deposit_open(env):
    """Issue 9, item 5: the gateway refuses to cancel a processing payment; the deposit neither
    fails nor is given up, and the payment's later success is credited."""
    polled = [PROCESSING] * 200 + [SUCCEEDED]   # the verdict comes hours after the timeout
    world = World(created=PROCESSING, polled=polled, cancelled=PROCESSING)
    result, state = await run(env, world)
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert world.cancels == 1 and world.failures == [] and world.reviews == []
    assert world.polls_before_cancel is not None and world.polls_before_cancel < 200
    assert world.polls == 201 and state == "SUCCEEDED"


async def test_the_webhook_after_the_timeout_credits_a_processing_payment(env):
    async def stripe_succeeds(deposit_id: str) -> None:   # while the cancel is refused
        await env.client.get_workflow_handle(workflow_id(deposit_id)).signal(
            PAYMENT_EVENT_SIGNAL, event(SUCCEEDED))

    world = World(created=PROCESSING, polled=[PROCESSING], cancelled=PROCESSING,
                  on_cancel=stripe_succeeds)
    result, _ = await run(env, world)
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert world.failures == [] and world.reviews == []


async def test_no_verdict_within_the_processing_limit_goes_to_operator_review(env):
    world = World(created=PROCESSING, polled=[PROCESSING], cancelled=PROCESSING)
    result, state = await run(env, world)
    assert (result.status, result.review_code) == (DepositStatus.REVIEW,
                                                   ReviewReason.STILL_PROCESSING)
    assert [(r.code, r.payment_intent) for r in world.reviews] == [
        (ReviewReason.STILL_PROCESSING, PI)]
    assert world.failures == [] and world.credits == [] and state == "REVIEW"
    # Polling backs off to an hour: three days of processing is not thousands of polls.
    assert world.polls_before_cancel is not None
    assert 60 <= world.polls - world.polls_before_cancel <= 90


async def test_a_cancel_failing_until_its_deadline_keeps_the_deposit_open(env):
    """Issue 9, item 12: the cancel is not retried for ever; not knowing, the deposit waits for
    the verdict, and the payment's success is still credited."""
    world = World(created=PROCESSING, polled=[PROCESSING] * 200 + [SUCCEEDED],
                  cancelled=RuntimeError("gateway 503"))
    result, _ = await run(env, world, request(gateway_deadline_seconds=120.0))
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert 2 <= world.cancels <= 20 and world.failures == []


async def test_a_create_failing_until_its_deadline_goes_to_operator_review(env):
    """Issue 9, item 12: not for ever under one gateway idempotency key."""
    world = World(created=RuntimeError("gateway 503"))
    result, state = await run(env, world, request(gateway_deadline_seconds=120.0))
    assert (result.status, result.review_code) == (DepositStatus.REVIEW,
                                                   ReviewReason.GATEWAY_UNREACHABLE)
    assert "gateway 503" in (result.review_reason or "")
    assert 2 <= world.creates <= 20
    assert [(r.code, r.payment_intent) for r in world.reviews] == [
        (ReviewReason.GATEWAY_UNREACHABLE, None)]
    assert world.failures == [] and world.credits == [] and state == "REVIEW"


async def test_a_review_that_finds_a_reported_success_ends_succeeded(env):
    world = World(created=RuntimeError("gateway 503"), reviewed=DepositStatus.SUCCEEDED)
    result, state = await run(env, world, request(gateway_deadline_seconds=60.0))
    assert result.status == DepositStatus.SUCCEEDED and state == "SUCCEEDED"


async def test_duplicated_and_reordered_webhooks_credit_once_and_a_late_failure_is_ignored(env):
    world = World(created=PROCESSING, polled=[PROCESSING])
    success = event(SUCCEEDED, "evt_success")
    failure = event(payment(GatewayStatus.REQUIRES_PAYMENT_METHOD, failure_code="card_declined"))

    async def stripe(handle: WorkflowHandle[Any, DepositResult]) -> None:
        await waits_in(handle, DepositStatus.PROCESSING)
        await handle.signal(PAYMENT_EVENT_SIGNAL, event(PROCESSING))   # not a verdict
        await handle.signal(PAYMENT_EVENT_SIGNAL, success)
        await handle.signal(PAYMENT_EVENT_SIGNAL, success)              # redelivered
        await handle.signal(PAYMENT_EVENT_SIGNAL, failure)              # older, arrives last

    result, _ = await run(env, world, webhooks=stripe)
    assert result.status == DepositStatus.SUCCEEDED
    assert len(world.credits) == 1 and world.failures == [] and world.polls == 0


async def test_a_webhook_before_the_wait_begins_is_used_at_once(env):

    async def overtaking_verdict(req: DepositRequest) -> None:
        # The verdict arrives while the create call is still waiting for its own answer.
        handle = env.client.get_workflow_handle(workflow_id(req.deposit_id))
        await handle.signal(PAYMENT_EVENT_SIGNAL, event(SUCCEEDED))

    world = World(created=PROCESSING, polled=[PROCESSING], on_create=overtaking_verdict)
    result, _ = await run(env, world)
    assert result.status == DepositStatus.SUCCEEDED and len(world.credits) == 1
    assert world.polls == 0
