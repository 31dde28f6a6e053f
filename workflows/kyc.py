"""The KYC workflow: the runbook of verifying one player's identity.

    open the case -> age check -> sanctions screening -> (operator review on a possible hit)
                  -> document check at the provider (verdict by signed webhook; RETRY asks
                     for another document) -> verified | rejected | expired

Workflow id: `kyc-<player id>`, started with signal-with-start (`submit_document`), so a
second POST with a new document reaches the running case. The provider's verdict arrives as
the `document_result` signal (from the webhook ingress), an operator's decision as `review`.
No verdict within `document_timeout_seconds` (or no resubmitted document) -> `expired`.
KycState and ReviewPending (search attributes) are upserted at the step that changes them, so
Temporal UI lists the cases waiting for an operator: `ReviewPending = "kyc_sanctions"`.
Must never: do I/O or read configuration (timings come in the request).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.kyc import (
        DocumentSubmission,
        KycActivities,
        KycDocument,
        KycRequest,
        KycResult,
        ReviewDecision,
        Screening,
        Transition,
        Verdict,
    )
    from settlepay import search_attributes as sa

RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30))
STEP_TIMEOUT = timedelta(seconds=30)

# Case states, as store/kyc.py names them.
PENDING, REVIEW, DOCUMENTS, RESUBMISSION_REQUIRED = "pending", "review", "documents", "resubmission_required"
VERIFIED, REJECTED, EXPIRED = "verified", "rejected", "expired"
SANCTIONS_REVIEW = "kyc_sanctions"


@workflow.defn(name="Kyc")
class KycWorkflow:
    def __init__(self) -> None:
        self._state = PENDING
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
        await self._activity(KycActivities.open_case, req)
        self._set_state(PENDING, player_id=req.player_id)

        age = await self._activity(KycActivities.check_age, req.player_id)
        if not age.passed:
            return await self.finish(req, REJECTED, "age", age.reason_code, age.reason)

        screening = await self._activity(KycActivities.screen_sanctions, req.player_id)
        if screening.hit:
            decision = await self.operator_review(req, screening)
            if decision.decision != "approve":
                return await self.finish(req, REJECTED, "review", "sanctions_match",
                                         f"rejected by {decision.operator} after a sanctions match",
                                         {"operator": decision.operator, "note": decision.note})

        return await self.check_documents(req)

    # --- the steps ---------------------------------------------------------------------------
    async def operator_review(self, req: KycRequest, screening: Screening) -> ReviewDecision:
        """A possible sanctions match: wait (without a deadline) for an operator's decision."""
        # Ready for the operator's signal before the database shows the case in review.
        self._set_state(REVIEW, review=SANCTIONS_REVIEW)
        await self._advance(req, REVIEW, "sanctions", "sanctions_review", "possible sanctions match",
                            {"sanctions_score": screening.score, "sanctions_match": screening.matched_name,
                             "list_reference": screening.list_reference}, event="kyc.review_required")
        await workflow.wait_condition(lambda: self._review is not None)
        assert self._review is not None
        self._set_state(PENDING, review=None)
        return self._review

    async def check_documents(self, req: KycRequest) -> KycResult:
        """Send each document to the provider and wait for its verdict; RETRY asks the player
        for another document, up to `max_document_attempts`."""
        timeout = timedelta(seconds=req.document_timeout_seconds)
        for attempt in range(1, req.max_document_attempts + 1):
            self._documents_wanted = attempt
            try:
                await workflow.wait_condition(lambda: len(self._documents) >= attempt, timeout=timeout)
            except asyncio.TimeoutError:
                return await self.finish(req, EXPIRED, "document", "document_not_submitted",
                                         "no document was submitted in time")
            reference = f"{req.workflow_id}:doc:{attempt}"
            await self._activity(KycActivities.submit_document, DocumentSubmission(
                req.player_id, reference, attempt, self._documents[attempt - 1]))
            self._set_state(DOCUMENTS)
            try:
                await workflow.wait_condition(lambda: reference in self._verdicts, timeout=timeout)
            except asyncio.TimeoutError:
                return await self.finish(req, EXPIRED, "document", "provider_timeout",
                                         "the KYC provider did not answer in time")
            verdict = self._verdicts[reference]
            detail = {"attempt": attempt, "check_id": verdict.check_id, "result": verdict.result,
                      "next": verdict.next, "provider_reason": verdict.reason}
            if verdict.result == "GREEN":
                return await self.finish(req, VERIFIED, "document", None, None, detail)
            if verdict.next != "RETRY":
                return await self.finish(req, REJECTED, "document", "document_rejected",
                                         verdict.reason or "the provider rejected the document", detail)
            if attempt < req.max_document_attempts:
                # Take the next document before the database asks the player for it.
                self._documents_wanted = attempt + 1
                self._set_state(RESUBMISSION_REQUIRED)
                await self._advance(req, RESUBMISSION_REQUIRED, "document", "document_retry",
                                    verdict.reason or "send another document", detail,
                                    event="kyc.resubmission_required")
        return await self.finish(req, REJECTED, "document", "document_attempts_exhausted",
                                 f"{req.max_document_attempts} documents were not accepted")

    async def finish(self, req: KycRequest, state: str, step: str, reason_code: str | None,
                     reason: str | None, detail: dict | None = None) -> KycResult:
        await self._advance(req, state, step, reason_code, reason, detail or {}, event=f"kyc.{state}")
        self._set_state(state)
        return KycResult(req.player_id, state, reason_code, reason)

    # --- signals and queries -------------------------------------------------------------------
    @workflow.signal(name="submit_document")
    def submit_document(self, document: KycDocument) -> None:
        """A document from the player; only taken when the case is waiting for one (a duplicate
        POST cannot pre-empt the next attempt)."""
        if len(self._documents) < self._documents_wanted:
            self._documents.append(document)

    @workflow.signal(name="document_result")
    def document_result(self, verdict: Verdict) -> None:
        """The provider's verified webhook. Redeliveries are dropped; the first verdict for a
        reference stands."""
        if verdict.event_id in self._seen_events:
            return
        self._seen_events.add(verdict.event_id)
        self._verdicts.setdefault(verdict.reference, verdict)

    @workflow.signal(name="review")
    def review(self, decision: ReviewDecision) -> None:
        if self._state == REVIEW and self._review is None and decision.decision in ("approve", "reject"):
            self._review = decision

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    # --- helpers -----------------------------------------------------------------------------
    async def _advance(self, req: KycRequest, state: str, step: str, reason_code: str | None,
                       reason: str | None, detail: dict, event: str | None = None) -> None:
        await self._activity(KycActivities.advance, Transition(
            req.player_id, state, step, reason_code, reason, detail, event))

    async def _activity(self, method, arg):  # noqa: ANN001, ANN202
        return await workflow.execute_activity_method(method, arg, start_to_close_timeout=STEP_TIMEOUT,
                                                      retry_policy=RETRY)

    def _set_state(self, state: str, *, player_id: str | None = None, review: str | None | bool = False) -> None:
        self._state = state
        if self._req is None or not self._req.index_search_attributes:
            return
        updates = [sa.KYC_STATE.value_set(state.upper())]
        if player_id is not None:
            updates.append(sa.PLAYER_ID.value_set(player_id))
        if review is None:
            updates.append(sa.REVIEW_PENDING.value_unset())
        elif review:
            updates.append(sa.REVIEW_PENDING.value_set(review))
        workflow.upsert_search_attributes(updates)
