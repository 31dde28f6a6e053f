"""Every change of a KYC case: the case row and its history row (store/kyc.py), the audit
record and, where partners care, the outbox event, in the caller's transaction.

    open_case(conn, player_id, actor=...)          # start, or restart after `expired`
    document_submitted(conn, submission, check_id) # the provider took a document
    advance(conn, transition)                      # a step the workflow decided (incl. reviews)
    kyc_payload(case)                              # the case as events show it

Each is idempotent: a retried activity (the case already in the target state, or finished)
writes nothing and returns False. An operator's review decision is recorded here only when the
workflow took it (the `decide_review` update succeeded and the workflow advanced the case), so
a decision that had no effect leaves no audit record.
Must never: open its own transaction, call the provider, or decide what the case does next.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import outbox
from store import kyc as store
from store import players
from workflows.contracts.kyc import DocumentSubmission, KycState, Step, Transition, workflow_id

SUBJECT = "player"


def open_case(conn: Connection, player_id: str, *, actor: str) -> bool:
    """Open the player's case (or reopen it after `expired`); False when one is under way or
    finished otherwise (a retry, or a case that needs no opening)."""
    before, after = store.open_case(conn, player_id)
    if before is after:
        return False
    audit.record(conn, actor=actor, action="kyc.started", subject_type=SUBJECT,
                 subject_id=player_id, before=case_record(before), after=case_record(after))
    return True


def document_submitted(conn: Connection, submission: DocumentSubmission, check_id: str) -> bool:
    """The provider accepted a document for checking: the case waits for its verdict."""
    return _change(conn, Transition(
        submission.player_id, KycState.DOCUMENTS, Step.DOCUMENT,
        detail={"attempt": submission.attempt, "check_id": check_id,
                "document_type": submission.document.type},
        action="kyc.document_submitted"),
        document_attempts=submission.attempt, provider_check_id=check_id)


def advance(conn: Connection, change: Transition) -> bool:
    """A step of the runbook, as the workflow decided it (reason, sanctions details, event)."""
    fields: dict[str, Any] = {"reason_code": change.reason_code, "reason": change.reason}
    if "sanctions_score" in change.detail:
        fields["sanctions_score"] = change.detail["sanctions_score"]
        fields["sanctions_match"] = change.detail.get("sanctions_match")
    return _change(conn, change, **fields)


def kyc_payload(case: RowMapping) -> dict[str, Any]:
    """A case as its outbox events carry it."""
    return {"player_id": case["player_id"], "state": case["state"],
            "reason_code": case["reason_code"], "reason": case["reason"]}


def case_record(case: RowMapping | None) -> dict[str, Any] | None:
    """A case row as its audit records keep it (JSON values)."""
    if case is None:
        return None
    return {key: (value.isoformat() if hasattr(value, "isoformat") else
                  float(value) if key == "sanctions_score" and value is not None else value)
            for key, value in case.items()}


def _change(conn: Connection, change: Transition, **fields: Any) -> bool:
    current = store.get(conn, change.player_id, for_update=True)
    if current is None or KycState(current["state"]).final or current["state"] == change.state:
        return False   # a retried or late activity: the change is already on record
    changed = store.transition(conn, change.player_id, state=change.state, step=change.step,
                               detail=change.detail, **fields)
    if changed is None:
        return False
    before, after = changed
    audit.record(conn, actor=change.actor or f"workflow:{workflow_id(change.player_id)}",
                 action=change.action or f"kyc.{change.state}", subject_type=SUBJECT,
                 subject_id=change.player_id, before=case_record(before),
                 after=case_record(after))
    if change.event:
        player = players.get(conn, change.player_id)
        outbox.emit(conn, event_type=change.event, aggregate_type="kyc",
                    aggregate_id=change.player_id, payload=kyc_payload(after),
                    player_id=change.player_id,
                    partner_id=player["partner_id"] if player else None)
    return True
