"""The KYC workflow's runbook, one test per branch, on the time-skipping server with stub
activities registered under the real names (no PostgreSQL, no provider; a day's wait is
skipped). The stubs play the outside world: the provider's verdict is signalled while the
document is being submitted (or, its webhook lost, found when the workflow polls the check),
the player's next document when the case asks for one, and the operator's decision when the
case goes to review."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.contracts.kyc import (
    WORKFLOW,
    Activity,
    AgeCheck,
    CheckLookup,
    Decision,
    DocumentResult,
    DocumentSubmission,
    KycDocument,
    KycRequest,
    KycResult,
    KycState,
    NextStep,
    ReasonCode,
    ReviewDecision,
    Screening,
    Signal,
    Transition,
    Update,
    Verdict,
    workflow_id,
)
from workflows.kyc import KycWorkflow

GREEN = (DocumentResult.GREEN, None)
RED_RETRY = (DocumentResult.RED, NextStep.RETRY)
RED_FINAL = (DocumentResult.RED, NextStep.FINAL)
SILENT = None


@dataclass
class World:
    """What the stubs answer, and what they were asked."""

    client: Client
    workflow_id: str
    documents: list[KycDocument]                       # the player's, one per request
    verdicts: list[tuple[DocumentResult, NextStep | None] | None]   # per document, in order
    age: AgeCheck = field(default_factory=lambda: AgeCheck(True))
    screening: Screening = field(default_factory=lambda: Screening(12.5, False))
    review: Decision | None = None
    submissions: list[DocumentSubmission] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    opened: int = 0
    webhooks_lost: bool = False         # the provider decides, its webhook never arrives
    undecided_polls: int = 0            # polls answered "pending" before the verdict shows
    webhook_during_poll: tuple[DocumentResult, NextStep | None] | None = None
    webhook_after_finish: tuple[DocumentResult, NextStep | None] | None = None
    poll_failures: list[Exception] = field(default_factory=list)   # raised by the first polls
    polls: list[str] = field(default_factory=list)
    lookups: list[CheckLookup] = field(default_factory=list)
    history: Any = None                 # the run's history, once it closed

    def handle(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(self.workflow_id)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=Activity.OPEN_CASE)
        async def open_case(req: KycRequest) -> None:
            self.opened += 1

        @activity.defn(name=Activity.CHECK_AGE)
        async def check_age(player_id: str) -> AgeCheck:
            return self.age

        @activity.defn(name=Activity.SCREEN_SANCTIONS)
        async def screen_sanctions(player_id: str) -> Screening:
            return self.screening

        @activity.defn(name=Activity.SUBMIT_DOCUMENT)
        async def submit_document(submission: DocumentSubmission) -> str:
            self.submissions.append(submission)
            check_id = f"chk_{len(self.submissions)}"
            verdict = self.verdicts[submission.attempt - 1]
            if verdict is not None and not self.webhooks_lost:
                # The provider answers (before the activity even returns).
                await self.webhook(check_id, submission.reference, verdict)
            return check_id

        @activity.defn(name=Activity.FETCH_VERDICT)
        async def fetch_verdict(lookup: CheckLookup) -> Verdict | None:
            self.lookups.append(lookup)
            poll = activity.info().activity_id          # one per poll, the same on a retry
            if poll not in self.polls:
                self.polls.append(poll)
            if self.polls.index(poll) < len(self.poll_failures):
                raise self.poll_failures[self.polls.index(poll)]
            if self.webhook_during_poll is not None:
                await self.webhook(lookup.check_id, lookup.reference, self.webhook_during_poll)
            attempt = int(lookup.check_id.removeprefix("chk_"))
            verdict = self.verdicts[attempt - 1]
            if verdict is None or len(self.lookups) <= self.undecided_polls:
                return None
            result, next_step = verdict
            return Verdict(f"poll:{lookup.check_id}", lookup.check_id, lookup.reference, result,
                           next_step, self.reason(result), polled=True)

        @activity.defn(name=Activity.ADVANCE)
        async def advance(change: Transition) -> None:
            self.transitions.append(change)
            if (change.state == KycState.RESUBMISSION_REQUIRED
                    and len(self.documents) > len(self.submissions)):
                await self.handle().signal(Signal.SUBMIT_DOCUMENT,
                                           self.documents[len(self.submissions)])
            if change.state == KycState.REVIEW and self.review is not None:
                await self.handle().execute_update(
                    Update.REVIEW, ReviewDecision(self.review, "operator:ada", "checked"))
            if change.state.final and self.webhook_after_finish is not None:
                submission = self.submissions[-1]
                await self.webhook(f"chk_{len(self.submissions)}", submission.reference,
                                   self.webhook_after_finish)

        return [open_case, check_age, screen_sanctions, submit_document, fetch_verdict, advance]

    async def webhook(self, check_id: str, reference: str,
                      verdict: tuple[DocumentResult, NextStep | None]) -> None:
        """The provider's verified webhook, as the webhook route signals it."""
        result, next_step = verdict
        await self.handle().signal(Signal.DOCUMENT_RESULT, Verdict(
            f"msg_{uuid.uuid4().hex}", check_id, reference, result, next_step,
            self.reason(result)))

    @staticmethod
    def reason(result: DocumentResult) -> str | None:
        return None if result == DocumentResult.GREEN else "stub reason"

    def steps(self) -> list[tuple[str, str, str | None]]:
        return [(t.state, t.step, t.reason_code) for t in self.transitions]

    def events(self) -> list[str]:
        return [t.event for t in self.transitions if t.event]


def document(number: str) -> KycDocument:
    return KycDocument("passport", number, "US")


async def run_case(env: WorkflowEnvironment, *, verdicts: list[Any], documents: int | None = None,
                   max_attempts: int = 3, poll_seconds: float = 900.0,
                   **world: Any) -> tuple[KycResult, World]:
    player_id = f"ply_{uuid.uuid4().hex[:12]}"
    count = len(verdicts) if documents is None else documents
    state = World(env.client, workflow_id(player_id),
                  [document(f"P{n:07d}") for n in range(1, count + 1)], verdicts, **world)
    queue = f"kyc-workflow-test-{uuid.uuid4().hex[:8]}"
    request = KycRequest(player_id, "api_key:test", document_timeout_seconds=86_400,
                         max_document_attempts=max_attempts, verdict_poll_seconds=poll_seconds,
                         index_search_attributes=False)
    async with Worker(env.client, task_queue=queue, workflows=[KycWorkflow],
                      activities=state.activities()):
        handle = await env.client.start_workflow(
            WORKFLOW, request, id=state.workflow_id, task_queue=queue,
            start_signal=Signal.SUBMIT_DOCUMENT, start_signal_args=[state.documents[0]],
            result_type=KycResult)
        result = await handle.result()
        run_id = handle.result_run_id
        state.history = await handle.fetch_history()
    assert all(s.reference == f"{state.workflow_id}:{run_id}:doc:{s.attempt}"
               for s in state.submissions)
    return result, state


async def test_a_player_under_age_is_rejected_before_screening(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], age=AgeCheck(
        False, ReasonCode.UNDER_AGE, "the minimum age in US-NJ is 21"))
    assert (result.state, result.reason_code) == (KycState.REJECTED, ReasonCode.UNDER_AGE)
    assert world.steps() == [("rejected", "age", "under_age")]
    assert world.events() == ["kyc.rejected"] and world.submissions == []


async def test_a_green_document_verifies_the_player(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[GREEN])
    assert (result.state, result.reason_code) == (KycState.VERIFIED, None)
    assert world.opened == 1 and [s.attempt for s in world.submissions] == [1]
    assert world.steps() == [("verified", "document", None)]
    assert world.transitions[0].detail["check_id"] == "chk_1"
    assert world.events() == ["kyc.verified"]


async def test_a_sanctions_hit_approved_by_an_operator_goes_on_to_the_document(time_skipping_env):
    hit = Screening(93.1, True, "Viktor Aleksandrovich Blackwood", "DEV:DEV-0001")
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], screening=hit,
                                   review=Decision.APPROVE)
    assert result.state == KycState.VERIFIED
    assert world.steps() == [("review", "sanctions", "sanctions_review"),
                             ("pending", "review", None), ("verified", "document", None)]
    approval = world.transitions[1]
    assert (approval.actor, approval.action) == ("operator:ada", "kyc.review.approve")
    assert approval.detail == {"decision": "approve", "operator": "operator:ada",
                               "note": "checked"}
    assert world.events() == ["kyc.review_required", "kyc.verified"]


async def test_a_sanctions_hit_rejected_by_an_operator_rejects_the_case(time_skipping_env):
    hit = Screening(91.0, True, "Ivo Rastko Vremenko", "DEV:DEV-0003")
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], screening=hit,
                                   review=Decision.REJECT)
    assert (result.state, result.reason_code) == (KycState.REJECTED, ReasonCode.SANCTIONS_MATCH)
    assert world.steps() == [("review", "sanctions", "sanctions_review"),
                             ("rejected", "review", "sanctions_match")]
    rejection = world.transitions[1]
    assert (rejection.actor, rejection.action) == ("operator:ada", "kyc.review.reject")
    assert rejection.detail == {"decision": "reject", "operator": "operator:ada",
                                "note": "checked"}
    assert world.submissions == []
    assert world.events() == ["kyc.review_required", "kyc.rejected"]


async def test_a_review_is_refused_when_the_case_does_not_wait_for_one(time_skipping_env):
    """The update's validator: no decision is taken (or recorded) outside a review."""
    player_id = f"ply_{uuid.uuid4().hex[:12]}"
    world = World(time_skipping_env.client, workflow_id(player_id), [document("P0000001")],
                  [SILENT])
    queue = f"kyc-workflow-test-{uuid.uuid4().hex[:8]}"
    request = KycRequest(player_id, "api_key:test", document_timeout_seconds=86_400,
                         index_search_attributes=False)
    async with Worker(time_skipping_env.client, task_queue=queue, workflows=[KycWorkflow],
                      activities=world.activities()):
        handle = await time_skipping_env.client.start_workflow(
            WORKFLOW, request, id=world.workflow_id, task_queue=queue,
            start_signal=Signal.SUBMIT_DOCUMENT, start_signal_args=[world.documents[0]],
            result_type=KycResult)
        refused = None
        try:
            await handle.execute_update(Update.REVIEW, ReviewDecision(Decision.APPROVE, "op"))
        except Exception as error:   # WorkflowUpdateFailedError carrying the refusal
            refused = error
        assert refused is not None and refused.cause.type == "kyc_not_in_review"
        result = await handle.result()
    assert result.state == KycState.EXPIRED
    assert all(t.step != "review" for t in world.transitions)


async def test_red_retry_asks_for_another_document_then_green_verifies(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[RED_RETRY, GREEN])
    assert result.state == KycState.VERIFIED
    assert [s.attempt for s in world.submissions] == [1, 2]
    assert [s.document.number for s in world.submissions] == ["P0000001", "P0000002"]
    assert world.steps() == [("resubmission_required", "document", "document_retry"),
                             ("verified", "document", None)]
    assert world.events() == ["kyc.resubmission_required", "kyc.verified"]


async def test_red_final_rejects_the_document(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[RED_FINAL])
    assert (result.state, result.reason_code) == (KycState.REJECTED,
                                                  ReasonCode.DOCUMENT_REJECTED)
    assert result.reason == "stub reason"
    assert world.steps() == [("rejected", "document", "document_rejected")]


async def test_every_attempt_answered_red_retry_exhausts_the_attempts(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[RED_RETRY, RED_RETRY],
                                   max_attempts=2)
    assert (result.state, result.reason_code) == (KycState.REJECTED,
                                                  ReasonCode.DOCUMENT_ATTEMPTS_EXHAUSTED)
    assert [s.attempt for s in world.submissions] == [1, 2]
    assert world.steps() == [("resubmission_required", "document", "document_retry"),
                             ("rejected", "document", "document_attempts_exhausted")]


async def test_no_verdict_from_the_provider_in_time_expires_the_case(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[SILENT], poll_seconds=3_600)
    assert (result.state, result.reason_code) == (KycState.EXPIRED, ReasonCode.PROVIDER_TIMEOUT)
    assert world.steps() == [("expired", "document", "provider_timeout")]
    assert world.events() == ["kyc.expired"]
    # Asked each hour of the day it waited, the last time at the deadline.
    reference = world.submissions[0].reference
    assert world.lookups == [CheckLookup("chk_1", reference)] * 24


async def test_a_verdict_whose_webhook_was_lost_is_found_by_polling_the_check(
        time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], webhooks_lost=True)
    assert (result.state, result.reason_code) == (KycState.VERIFIED, None)
    assert world.lookups == [CheckLookup("chk_1", world.submissions[0].reference)]
    assert world.steps() == [("verified", "document", None)]
    assert world.transitions[0].detail == {
        "attempt": 1, "check_id": "chk_1", "result": "GREEN", "next": None,
        "provider_reason": None, "verdict_by": "poll"}
    assert world.events() == ["kyc.verified"]
    # Polled after one interval without the webhook, not before.
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToSeconds()
              for e in world.history.events if e.HasField("timer_started_event_attributes")]
    assert timers == [900]


async def test_the_check_is_polled_each_interval_until_the_provider_decides(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[RED_RETRY, GREEN],
                                   webhooks_lost=True, undecided_polls=2)
    assert result.state == KycState.VERIFIED
    first, second = (s.reference for s in world.submissions)
    assert world.lookups == [CheckLookup("chk_1", first)] * 3 + [CheckLookup("chk_2", second)]
    assert world.steps() == [("resubmission_required", "document", "document_retry"),
                             ("verified", "document", None)]


async def test_a_poll_the_provider_refused_or_could_not_answer_leaves_the_case_waiting(
        time_skipping_env):
    """A refused read (404) and an outage outlasting the poll's deadline are not verdicts: the
    case polls again at the next interval, and the verdict found then decides it."""
    refused = ApplicationError("check not found", type="kyc_provider_refused",
                               non_retryable=True)
    outage = RuntimeError("KYC provider answered 503")
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], webhooks_lost=True,
                                   poll_failures=[refused, outage])
    assert (result.state, result.reason_code) == (KycState.VERIFIED, None)
    assert world.steps() == [("verified", "document", None)]
    assert len(world.polls) == 3
    # The refusal, tried once; the outage, retried until the poll's deadline (both polls
    # failed); then the verdict, each poll an interval after the one before.
    assert len(world.lookups) > 3
    failed = [e for e in world.history.events
              if e.HasField("activity_task_failed_event_attributes")]
    assert len(failed) == 2
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToSeconds()
              for e in world.history.events if e.HasField("timer_started_event_attributes")]
    assert timers == [900, 900, 900]


async def test_a_webhook_arriving_while_the_check_is_polled_stands_over_the_polled_verdict(
        time_skipping_env):
    """The first verdict for a reference stands, whichever way it came."""
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], webhooks_lost=True,
                                   webhook_during_poll=RED_FINAL)
    assert (result.state, result.reason_code) == (KycState.REJECTED,
                                                  ReasonCode.DOCUMENT_REJECTED)
    assert len(world.lookups) == 1
    assert "verdict_by" not in world.transitions[0].detail
    assert world.transitions[0].detail["result"] == "RED"


async def test_a_webhook_after_a_polled_verdict_changes_nothing(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[GREEN], webhooks_lost=True,
                                   webhook_after_finish=RED_FINAL)
    assert (result.state, result.reason_code) == (KycState.VERIFIED, None)
    assert world.steps() == [("verified", "document", None)]
    assert world.events() == ["kyc.verified"]


async def test_no_second_document_after_red_retry_expires_the_case(time_skipping_env):
    result, world = await run_case(time_skipping_env, verdicts=[RED_RETRY, GREEN], documents=1)
    assert (result.state, result.reason_code) == (KycState.EXPIRED,
                                                  ReasonCode.DOCUMENT_NOT_SUBMITTED)
    assert [s.attempt for s in world.submissions] == [1]
    assert world.steps() == [("resubmission_required", "document", "document_retry"),
                             ("expired", "document", "document_not_submitted")]


async def test_a_case_reopened_after_expiry_sends_its_documents_under_new_references(
        time_skipping_env):
    """Issue 9 #3 at the workflow: each run names its documents after itself, so the
    provider's idempotency key is new and an earlier run's verdict cannot match."""
    first, world = await run_case(time_skipping_env, verdicts=[SILENT])
    player_id = world.workflow_id.removeprefix("kyc-")
    queue = f"kyc-workflow-test-{uuid.uuid4().hex[:8]}"
    again = World(time_skipping_env.client, world.workflow_id, [document("P0000009")], [GREEN])
    old_reference = world.submissions[0].reference
    async with Worker(time_skipping_env.client, task_queue=queue, workflows=[KycWorkflow],
                      activities=again.activities()):
        handle = await time_skipping_env.client.start_workflow(
            WORKFLOW, KycRequest(player_id, "api_key:test", index_search_attributes=False),
            id=world.workflow_id, task_queue=queue, start_signal=Signal.SUBMIT_DOCUMENT,
            start_signal_args=[again.documents[0]], result_type=KycResult)
        result = await handle.result()
    assert first.state == KycState.EXPIRED and result.state == KycState.VERIFIED
    [submission] = again.submissions
    assert submission.reference != old_reference
    assert submission.reference == f"{world.workflow_id}:{handle.result_run_id}:doc:1"
