"""The KYC workflow: the runbook of verifying one player's identity.

    open the case -> age check -> sanctions screening -> (operator review on a possible hit)
                  -> document check at the provider (verdict by signed webhook, or read back
                     from the provider when none came; RETRY asks for another document)
                  -> verified | rejected | expired

Workflow id: `kyc-<player id>` (workflows/contracts/kyc.py), started with signal-with-start
(`submit_document`), so a second POST with a new document reaches the running case; a case
reopened after `expired` is a new run. Each document is checked under a reference naming this
run (`kyc-<player>:<run id>:doc:<n>`, also the provider's idempotency key), so a reopened case
gets new checks and an earlier run's verdicts never decide it. The provider's verdict arrives as
the `document_result` signal (from the webhook ingress); when none came within
`verdict_poll_seconds`, the workflow asks the provider for the check (Activity.FETCH_VERDICT),
again each interval, and takes a verdict found so exactly as the webhook's: the first verdict
for a reference stands, a later one (webhook or poll) changes nothing. An operator's decision
as the `decide_review` update, refused unless the case waits for one, and recorded (audit
included) by the workflow itself, so only a decision that took effect is on record. No verdict
within `document_timeout_seconds` (or no resubmitted document) -> `expired`.
KycState and ReviewPending (search attributes) are upserted at the step that changes them, so
Temporal UI lists the cases waiting for an operator: `ReviewPending = "kyc_sanctions"`.

Changing running cases: each behaviour change that alters the commands (or the values they
carry) of a case already under way is behind `workflow.patched(Patch.X)`, the old path kept
until no run that started before it remains; the replay test (tests/workflows/
test_replay_kyc.py) replays histories recorded before each patch.
Must never: do I/O or read configuration (timings come in the request).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

# Passed through the sandbox, as in workflows/deposit.py: definitions only (no state, no I/O),
# which a new run would otherwise execute again.
with workflow.unsafe.imports_passed_through():
    from settlepay import search_attributes as sa
    from workflows.contracts.kyc import (
        FINAL_EVENT,
        Activity,
        AgeCheck,
        CheckLookup,
        Decision,
        DocumentResult,
        DocumentSubmission,
        Event,
        KycDocument,
        KycRefusal,
        KycRequest,
        KycResult,
        KycState,
        NextStep,
        Patch,
        Query,
        ReasonCode,
        ReviewDecision,
        ReviewPending,
        Screening,
        Signal,
        Step,
        Transition,
        Update,
        Verdict,
        document_reference,
        legacy_document_reference,
    )
    from workflows.contracts.refusal import Refusal

RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30))
STEP_TIMEOUT = timedelta(seconds=30)
# A poll of the provider retries (an outage) for at most this long; failing, the case keeps
# waiting for the webhook and polls again at the next interval.
POLL_TIMEOUT = timedelta(seconds=60)

T = TypeVar("T")


@workflow.defn(name="Kyc")
class KycWorkflow:
    def __init__(self) -> None:
        self._state = KycState.PENDING
        self._req: KycRequest | None = None
        self._documents: list[KycDocument] = []
        self._documents_wanted = 1
        self._verdicts: dict[str, Verdict] = {}
        self._seen_events: set[str] = set()
        self._review: ReviewDecision | None = None

    # --- the runbook -------------------------------------------------------------------------
    @workflow.run
    async def run(self, req: KycRequest) -> KycResult:
        self._req = req
        await self._activity(Activity.OPEN_CASE, req)
        self._set_state(KycState.PENDING, player_id=req.player_id)

        age = await self._activity(Activity.CHECK_AGE, req.player_id, AgeCheck)
        if not age.passed:
            return await self.finish(req, KycState.REJECTED, Step.AGE, age.reason_code,
                                     age.reason)

        screening = await self._activity(Activity.SCREEN_SANCTIONS, req.player_id, Screening)
        if screening.hit:
            decision = await self.operator_review(req, screening)
            if decision.decision != Decision.APPROVE:
                return await self.finish(
                    req, KycState.REJECTED, Step.REVIEW, ReasonCode.SANCTIONS_MATCH,
                    f"rejected by {decision.operator} after a sanctions match",
                    {"decision": decision.decision, "operator": decision.operator,
                     "note": decision.note},
                    **self._decided_by(decision))

        return await self.check_documents(req)

    # --- the steps ---------------------------------------------------------------------------
    async def operator_review(self, req: KycRequest, screening: Screening) -> ReviewDecision:
        """A possible sanctions match: wait (without a deadline) for an operator's decision."""
        # Ready for the operator's decision before the database shows the case in review.
        self._set_state(KycState.REVIEW, review_pending=ReviewPending.SANCTIONS)
        await self._advance(Transition(
            req.player_id, KycState.REVIEW, Step.SANCTIONS, ReasonCode.SANCTIONS_REVIEW,
            "possible sanctions match",
            {"sanctions_score": screening.score, "sanctions_match": screening.matched_name,
             "list_reference": screening.list_reference},
            event=Event.REVIEW_REQUIRED))
        await workflow.wait_condition(lambda: self._review is not None)
        assert self._review is not None
        decision = self._review
        self._set_state(KycState.PENDING, review_cleared=True)
        if decision.decision == Decision.APPROVE and workflow.patched(
                Patch.REVIEW_RECORDED_BY_WORKFLOW):
            # The approval itself is a step of the case, recorded by the operator's name.
            await self._advance(Transition(
                req.player_id, KycState.PENDING, Step.REVIEW, None, None,
                {"decision": decision.decision, "operator": decision.operator,
                 "note": decision.note}, **self._decided_by(decision)))
        return decision

    async def check_documents(self, req: KycRequest) -> KycResult:
        """Send each document to the provider and wait for its verdict; RETRY asks the player
        for another document, up to `max_document_attempts`."""
        timeout = timedelta(seconds=req.document_timeout_seconds)
        for attempt in range(1, req.max_document_attempts + 1):
            self._documents_wanted = attempt
            if not await self._within(timeout, self._has_document(attempt)):
                return await self.finish(req, KycState.EXPIRED, Step.DOCUMENT,
                                         ReasonCode.DOCUMENT_NOT_SUBMITTED,
                                         "no document was submitted in time")
            reference = self._reference(req, attempt)
            check_id = await self._activity(Activity.SUBMIT_DOCUMENT, DocumentSubmission(
                req.player_id, reference, attempt, self._documents[attempt - 1]), str)
            self._set_state(KycState.DOCUMENTS)
            if not await self.wait_for_verdict(req, timeout, CheckLookup(check_id, reference)):
                return await self.finish(req, KycState.EXPIRED, Step.DOCUMENT,
                                         ReasonCode.PROVIDER_TIMEOUT,
                                         "the KYC provider did not answer in time")
            verdict = self._verdicts[reference]
            detail = {"attempt": attempt, "check_id": verdict.check_id, "result": verdict.result,
                      "next": verdict.next, "provider_reason": verdict.reason}
            if verdict.polled:
                detail["verdict_by"] = "poll"       # the webhook never came
            if verdict.result == DocumentResult.GREEN:
                return await self.finish(req, KycState.VERIFIED, Step.DOCUMENT, None, None,
                                         detail)
            if verdict.next != NextStep.RETRY:
                return await self.finish(req, KycState.REJECTED, Step.DOCUMENT,
                                         ReasonCode.DOCUMENT_REJECTED,
                                         verdict.reason or "the provider rejected the document",
                                         detail)
            if attempt < req.max_document_attempts:
                # Take the next document before the database asks the player for it.
                self._documents_wanted = attempt + 1
                self._set_state(KycState.RESUBMISSION_REQUIRED)
                await self._advance(Transition(
                    req.player_id, KycState.RESUBMISSION_REQUIRED, Step.DOCUMENT,
                    ReasonCode.DOCUMENT_RETRY, verdict.reason or "send another document", detail,
                    event=Event.RESUBMISSION_REQUIRED))
        return await self.finish(req, KycState.REJECTED, Step.DOCUMENT,
                                 ReasonCode.DOCUMENT_ATTEMPTS_EXHAUSTED,
                                 f"{req.max_document_attempts} documents were not accepted")

    async def wait_for_verdict(self, req: KycRequest, timeout: timedelta,
                               check: CheckLookup) -> bool:
        """Wait up to `timeout` for the check's verdict; each `verdict_poll_seconds` without
        the webhook, ask the provider for it. False: none within `timeout`."""
        has_verdict = self._has_verdict(check.reference)
        if not workflow.patched(Patch.VERDICT_POLLED):
            return await self._within(timeout, has_verdict)
        deadline = workflow.now() + timeout
        interval = timedelta(seconds=req.verdict_poll_seconds)
        while not await self._within(min(interval, deadline - workflow.now()), has_verdict):
            polled = await self._fetch_verdict(check)
            if polled is not None:
                self._verdicts.setdefault(check.reference, polled)   # the first one stands
            if has_verdict():
                return True
            if workflow.now() >= deadline:
                return False
        return True

    async def finish(self, req: KycRequest, state: KycState, step: Step,
                     reason_code: ReasonCode | None, reason: str | None,
                     detail: dict[str, Any] | None = None, *, actor: str | None = None,
                     action: str | None = None) -> KycResult:
        await self._advance(Transition(req.player_id, state, step, reason_code, reason,
                                       detail or {}, event=FINAL_EVENT[state], actor=actor,
                                       action=action))
        self._set_state(state)
        return KycResult(req.player_id, state, reason_code, reason)

    # --- signals, updates and queries ----------------------------------------------------------
    @workflow.signal(name=Signal.SUBMIT_DOCUMENT)
    def submit_document(self, document: KycDocument) -> None:
        """A document from the player; only taken when the case is waiting for one (a duplicate
        POST cannot pre-empt the next attempt)."""
        if len(self._documents) < self._documents_wanted:
            self._documents.append(document)

    @workflow.signal(name=Signal.DOCUMENT_RESULT)
    def document_result(self, verdict: Verdict) -> None:
        """The provider's verified webhook. Redeliveries are dropped; the first verdict for a
        reference stands; a verdict for a reference this run did not send is never read."""
        if verdict.event_id in self._seen_events:
            return
        self._seen_events.add(verdict.event_id)
        self._verdicts.setdefault(verdict.reference, verdict)

    @workflow.update(name=Update.REVIEW)
    def decide_review(self, decision: ReviewDecision) -> None:
        """An operator's decision on a possible sanctions match (validated below)."""
        self._review = decision

    @decide_review.validator
    def _validate_review(self, decision: ReviewDecision) -> None:
        if self._state != KycState.REVIEW or self._review is not None:
            raise Refusal(KycRefusal.NOT_IN_REVIEW,
                          f"the KYC case is {self._state}, not waiting for a review").as_error()

    @workflow.signal(name=Signal.REVIEW)
    def review(self, decision: ReviewDecision) -> None:
        """The decision as a signal, as runs started before `decide_review` received it."""
        if self._state == KycState.REVIEW and self._review is None:
            self._review = decision

    @workflow.query(name=Query.STATE)
    def state(self) -> str:
        return self._state

    # --- helpers -----------------------------------------------------------------------------
    def _reference(self, req: KycRequest, attempt: int) -> str:
        if workflow.patched(Patch.REFERENCE_PER_RUN):
            return document_reference(req.workflow_id, workflow.info().run_id, attempt)
        return legacy_document_reference(req.workflow_id, attempt)

    def _has_document(self, attempt: int) -> Callable[[], bool]:
        return lambda: len(self._documents) >= attempt

    def _has_verdict(self, reference: str) -> Callable[[], bool]:
        return lambda: reference in self._verdicts

    @staticmethod
    async def _within(timeout: timedelta, condition: Callable[[], bool]) -> bool:
        """Wait for `condition`; False when `timeout` passed first."""
        try:
            await workflow.wait_condition(condition, timeout=timeout)
        except TimeoutError:
            return False
        return True

    @staticmethod
    def _decided_by(decision: ReviewDecision) -> dict[str, str | None]:
        """Actor and audit action of a transition an operator's decision caused (runs that
        started before Patch.REVIEW_RECORDED_BY_WORKFLOW: the workflow's own)."""
        if not workflow.patched(Patch.REVIEW_RECORDED_BY_WORKFLOW):
            return {"actor": None, "action": None}
        return {"actor": decision.operator, "action": f"kyc.review.{decision.decision}"}

    async def _fetch_verdict(self, check: CheckLookup) -> Verdict | None:
        """The provider's verdict on the check, None while undecided or when the provider could
        not be asked (an outage past POLL_TIMEOUT, a refusal): the webhook may still come."""
        try:
            return await workflow.execute_activity(
                Activity.FETCH_VERDICT, check, result_type=Verdict | None,
                start_to_close_timeout=STEP_TIMEOUT, schedule_to_close_timeout=POLL_TIMEOUT,
                retry_policy=RETRY)
        except ActivityError as error:
            workflow.logger.warning("kyc verdict poll failed",
                                    extra={"check_id": check.check_id, "error": str(error.cause)})
            return None

    async def _advance(self, change: Transition) -> None:
        await self._activity(Activity.ADVANCE, change)

    async def _activity(self, name: Activity, arg: object,
                        result_type: type[T] | None = None) -> T:
        return await workflow.execute_activity(name, arg, result_type=result_type,
                                               start_to_close_timeout=STEP_TIMEOUT,
                                               retry_policy=RETRY)

    def _set_state(self, state: KycState, *, player_id: str | None = None,
                   review_pending: ReviewPending | None = None,
                   review_cleared: bool = False) -> None:
        """The state, and (one upsert) the search attributes operators filter on."""
        self._state = state
        workflow.logger.info("kyc step", extra={"kyc_state": str(state)})   # a JSON line (ids)
        if self._req is None or not self._req.index_search_attributes:
            return
        updates = [sa.KYC_STATE.value_set(state.search_value)]
        if player_id is not None:
            updates.append(sa.PLAYER_ID.value_set(player_id))
        if review_cleared:
            updates.append(sa.REVIEW_PENDING.value_unset())
        elif review_pending is not None:
            updates.append(sa.REVIEW_PENDING.value_set(review_pending))
        workflow.upsert_search_attributes(updates)
