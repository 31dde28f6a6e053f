"""KYC activities: the age check, the sanctions screening, the document check at the provider,
and the case's state changes (each with its history row, audit record and outbox event).

The data types the KYC workflow exchanges with its activities, signals and the API live here
too. The provider check's idempotency key is its reference, `kyc-<player>:doc:<n>`, so a retried
activity never asks the provider twice.
Must never: decide what the workflow does next (it returns facts; the workflow decides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

import audit
import outbox
from adapters.kyc import (
    KycProvider,
    KycProviderError,
    Person,
    SubmittedDocument,
)
from domain import age, sanctions
from settlepay.db import run_in_transaction
from store import kyc as store
from store import players
from sqlalchemy import Engine

from settlepay.config import Settings

# --- what the workflow, the activities, the signals and the API exchange ----------------------


@dataclass
class KycDocument:
    type: str          # passport | driving_licence | id_card
    number: str
    country: str


@dataclass
class KycRequest:
    player_id: str
    actor: str                              # who asked (api_key:<id>), for the audit trail
    # From Settings, fixed at start so the workflow never reads configuration.
    document_timeout_seconds: float = 86_400.0
    max_document_attempts: int = 3
    # Off only where the Temporal server has no custom search attributes (the time-skipping
    # test server): operators find cases in Temporal UI through them.
    index_search_attributes: bool = True

    @property
    def workflow_id(self) -> str:
        return store.workflow_id_for(self.player_id)


@dataclass
class ReviewDecision:
    decision: str                           # approve | reject
    operator: str                           # operator:<name> or api_key:<id>
    note: str | None = None


@dataclass
class Verdict:
    """A verified provider webhook, as a signal to the player's KYC workflow."""
    event_id: str
    check_id: str
    reference: str
    result: str                             # GREEN | RED
    next: str | None = None                 # RED: RETRY | FINAL
    reason: str | None = None


@dataclass
class AgeCheck:
    passed: bool
    reason_code: str | None = None
    reason: str | None = None


@dataclass
class Screening:
    score: float
    hit: bool
    matched_name: str | None = None
    list_reference: str | None = None


@dataclass
class DocumentSubmission:
    player_id: str
    reference: str                          # kyc-<player>:doc:<n>: also the idempotency key
    attempt: int
    document: KycDocument


@dataclass
class Transition:
    """A state change of the case, as the workflow decided it."""
    player_id: str
    state: str
    step: str
    reason_code: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    event: str | None = None                # outbox event type, when partners care


@dataclass
class KycResult:
    player_id: str
    state: str
    reason_code: str | None = None
    reason: str | None = None


class KycActivities:
    def __init__(self, engine: Engine, settings: Settings, provider: KycProvider) -> None:
        self._engine = engine
        self._settings = settings
        self._kyc = provider

    def all(self) -> list:
        return [self.open_case, self.check_age, self.screen_sanctions, self.submit_document,
                self.advance]

    @cached_property
    def _screening_list(self) -> list[sanctions.ListedName]:
        path = self._settings.sanctions_list_path
        text = path.read_text(encoding="utf-8") if path else sanctions.development_list_text()
        return sanctions.parse_list(text)

    def _provider(self) -> KycProvider:
        return self._kyc

    @activity.defn(name="kyc.open_case")
    def open_case(self, req: KycRequest) -> None:
        def work(conn):  # noqa: ANN001, ANN202
            before, after = store.open_case(conn, req.player_id)
            if before is after:
                return  # a retry, or a case already under way
            audit.record(conn, actor=req.actor, action="kyc.started", subject_type="player",
                         subject_id=req.player_id, before=store.as_record(before),
                         after=store.as_record(after))
        run_in_transaction(self._engine, work)

    @activity.defn(name="kyc.check_age")
    def check_age(self, player_id: str) -> AgeCheck:
        with self._engine.connect() as conn:
            player = players.get(conn, player_id)
        if player is None:
            return AgeCheck(False, "player_not_found", f"player {player_id} does not exist")
        minimum = self._settings.kyc_min_age_by_jurisdiction.get(
            player["jurisdiction"] or "", self._settings.kyc_default_min_age)
        if player["date_of_birth"] is None:
            return AgeCheck(False, "date_of_birth_missing", "the player has no date of birth on record")
        if not age.old_enough(player["date_of_birth"], datetime.now(UTC).date(), minimum):
            return AgeCheck(False, "under_age",
                            f"the minimum age in {player['jurisdiction'] or 'this jurisdiction'} is {minimum}")
        return AgeCheck(True)

    @activity.defn(name="kyc.screen_sanctions")
    def screen_sanctions(self, player_id: str) -> Screening:
        with self._engine.connect() as conn:
            player = players.get(conn, player_id)
        if player is None:
            raise ApplicationError(f"player {player_id} does not exist", type="player_not_found",
                                   non_retryable=True)
        result = sanctions.screen(f"{player['first_name']} {player['last_name']}", self._screening_list,
                                  self._settings.sanctions_match_threshold)
        return Screening(score=result.score, hit=result.hit,
                         matched_name=result.match.name if result.match else None,
                         list_reference=(f"{result.match.list}:{result.match.reference}"
                                         if result.match else None))

    @activity.defn(name="kyc.submit_document")
    def submit_document(self, submission: DocumentSubmission) -> str:
        with self._engine.connect() as conn:
            player = players.get(conn, submission.player_id)
        if player is None:
            raise ApplicationError("player not found", type="player_not_found", non_retryable=True)
        person = Person(player["first_name"], player["last_name"],
                        None if player["date_of_birth"] is None else player["date_of_birth"].isoformat())
        doc = submission.document
        try:
            check = self._provider().submit_check(
                reference=submission.reference, person=person,
                document=SubmittedDocument(doc.type, doc.number, doc.country),
                idempotency_key=submission.reference)
        except KycProviderError as error:
            raise ApplicationError(str(error), type="kyc_provider_refused", non_retryable=True) from error
        # KycProviderUnavailable and anything else: retried by Temporal with the same key.

        def work(conn):  # noqa: ANN001, ANN202
            changed = store.transition(conn, submission.player_id, state=store.DOCUMENTS, step="document",
                                       detail={"attempt": submission.attempt, "check_id": check.id,
                                               "document_type": doc.type},
                                       document_attempts=submission.attempt, provider_check_id=check.id)
            if changed is not None:
                audit.record(conn, actor=f"workflow:{store.workflow_id_for(submission.player_id)}",
                             action="kyc.document_submitted", subject_type="player",
                             subject_id=submission.player_id, before=store.as_record(changed[0]),
                             after=store.as_record(changed[1]))
        run_in_transaction(self._engine, work)
        return check.id

    @activity.defn(name="kyc.advance")
    def advance(self, change: Transition) -> None:
        def work(conn):  # noqa: ANN001, ANN202
            fields: dict[str, Any] = {"reason_code": change.reason_code, "reason": change.reason}
            if "sanctions_score" in change.detail:
                fields["sanctions_score"] = change.detail["sanctions_score"]
                fields["sanctions_match"] = change.detail.get("sanctions_match")
            changed = store.transition(conn, change.player_id, state=change.state, step=change.step,
                                       detail=change.detail, **fields)
            if changed is None:
                return  # already finished: a retried activity
            before, after = changed
            audit.record(conn, actor=f"workflow:{store.workflow_id_for(change.player_id)}",
                         action=f"kyc.{change.state}", subject_type="player", subject_id=change.player_id,
                         before=store.as_record(before), after=store.as_record(after))
            if change.event:
                player = players.get(conn, change.player_id)
                outbox.emit(conn, event_type=change.event, aggregate_type="kyc",
                            aggregate_id=change.player_id,
                            payload={"player_id": change.player_id, "state": change.state,
                                     "reason_code": change.reason_code, "reason": change.reason},
                            player_id=change.player_id, partner_id=player["partner_id"] if player else None)
        run_in_transaction(self._engine, work)
