"""KYC activities: the age check, the sanctions screening, the document check at the provider
(sent, and read back when its verdict webhook is late or lost), and the case's state changes
(through commands/kyc.py).

The types they exchange with the workflow are in workflows/contracts/kyc.py. The provider
check's idempotency key is its reference, `kyc-<player>:<run id>:doc:<n>`, so a retried
activity never asks the provider twice, and a reopened case (a new run) asks anew.
Must never: decide what the workflow does next (it returns facts; the workflow decides).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine
from temporalio import activity

from adapters.kyc import KycProvider, KycProviderError, Person, SubmittedDocument
from commands import kyc as commands
from domain import age, sanctions
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import players
from workflows.contracts.kyc import (
    Activity,
    AgeCheck,
    CheckLookup,
    DocumentResult,
    DocumentSubmission,
    KycRefusal,
    KycRequest,
    NextStep,
    ReasonCode,
    Screening,
    Transition,
    Verdict,
)
from workflows.contracts.refusal import Refusal


class KycActivities:
    def __init__(self, engine: Engine, settings: Settings, provider: KycProvider) -> None:
        self._engine = engine
        self._settings = settings
        self._provider = provider

    def all(self) -> list[Callable[..., Any]]:
        return [self.open_case, self.check_age, self.screen_sanctions, self.submit_document,
                self.fetch_verdict, self.advance]

    @cached_property
    def _screening_list(self) -> list[sanctions.ListedName]:
        path = self._settings.sanctions_list_path
        text = path.read_text(encoding="utf-8") if path else sanctions.development_list_text()
        return sanctions.parse_list(text)

    @activity.defn(name=Activity.OPEN_CASE)
    def open_case(self, req: KycRequest) -> None:
        def work(conn: Connection) -> None:
            commands.open_case(conn, req.player_id, actor=req.actor)
        run_in_transaction(self._engine, work)

    @activity.defn(name=Activity.CHECK_AGE)
    def check_age(self, player_id: str) -> AgeCheck:
        with self._engine.connect() as conn:
            player = players.get(conn, player_id)
        if player is None:
            return AgeCheck(False, ReasonCode.PLAYER_NOT_FOUND,
                            f"player {player_id} does not exist")
        minimum = self._settings.kyc_min_age_by_jurisdiction.get(
            player["jurisdiction"] or "", self._settings.kyc_default_min_age)
        if player["date_of_birth"] is None:
            return AgeCheck(False, ReasonCode.DATE_OF_BIRTH_MISSING,
                            "the player has no date of birth on record")
        if not age.old_enough(player["date_of_birth"], datetime.now(UTC).date(), minimum):
            where = player["jurisdiction"] or "this jurisdiction"
            return AgeCheck(False, ReasonCode.UNDER_AGE, f"the minimum age in {where} is {minimum}")
        return AgeCheck(True)

    @activity.defn(name=Activity.SCREEN_SANCTIONS)
    def screen_sanctions(self, player_id: str) -> Screening:
        with self._engine.connect() as conn:
            player = players.get(conn, player_id)
        if player is None:
            raise Refusal(KycRefusal.PLAYER_NOT_FOUND,
                          f"player {player_id} does not exist").as_error()
        result = sanctions.screen(f"{player['first_name']} {player['last_name']}",
                                  self._screening_list, self._settings.sanctions_match_threshold)
        match = result.match
        return Screening(score=result.score, hit=result.hit,
                         matched_name=match.name if match else None,
                         list_reference=f"{match.list}:{match.reference}" if match else None)

    @activity.defn(name=Activity.SUBMIT_DOCUMENT)
    def submit_document(self, submission: DocumentSubmission) -> str:
        with self._engine.connect() as conn:
            player = players.get(conn, submission.player_id)
        if player is None:
            raise Refusal(KycRefusal.PLAYER_NOT_FOUND, "player not found").as_error()
        born = player["date_of_birth"]
        person = Person(player["first_name"], player["last_name"],
                        None if born is None else born.isoformat())
        doc = submission.document
        try:
            check = self._provider.submit_check(
                reference=submission.reference, person=person,
                document=SubmittedDocument(doc.type, doc.number, doc.country),
                idempotency_key=submission.reference)
        except KycProviderError as error:
            raise Refusal(KycRefusal.PROVIDER_REFUSED, str(error)).as_error() from error
        # KycProviderUnavailable and anything else: retried by Temporal with the same key.

        def work(conn: Connection) -> None:
            commands.document_submitted(conn, submission, check.id)
        run_in_transaction(self._engine, work)
        return check.id

    @activity.defn(name=Activity.FETCH_VERDICT)
    def fetch_verdict(self, lookup: CheckLookup) -> Verdict | None:
        """The check's verdict as the provider has it now; None while it is undecided."""
        try:
            check = self._provider.get_check(lookup.check_id)
        except KycProviderError as error:
            raise Refusal(KycRefusal.PROVIDER_REFUSED, str(error)).as_error() from error
        # KycProviderUnavailable and anything else: retried by Temporal (a read, no key needed).
        if check.reference != lookup.reference:
            raise Refusal(KycRefusal.PROVIDER_REFUSED,
                          f"check {lookup.check_id} is not the document "
                          f"{lookup.reference}").as_error()
        if not check.decided:
            return None
        try:
            result = DocumentResult(check.result)
            next_step = None if check.next is None else NextStep(check.next)
        except ValueError as error:
            raise Refusal(KycRefusal.PROVIDER_REFUSED,
                          f"check {lookup.check_id} has a verdict the provider does not send: "
                          f"{error}").as_error() from error
        return Verdict(f"poll:{check.id}", check.id, lookup.reference, result, next_step,
                       check.reason, polled=True)

    @activity.defn(name=Activity.ADVANCE)
    def advance(self, change: Transition) -> None:
        def work(conn: Connection) -> None:
            commands.advance(conn, change)
        run_in_transaction(self._engine, work)
