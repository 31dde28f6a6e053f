"""The kyc_cases and kyc_history tables: SQL only.

One case row per player holds the current KYC state; every transition appends a history row in
the same statement batch, so the player view shows where the case is and how it got there.
States are `KycState` (workflows/contracts/kyc.py). commands/kyc.py calls these and writes the
audit record and the outbox event in the same transaction.
Must never: decide a KYC outcome, call the provider, write audit or outbox records, or touch
the ledger.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from workflows.contracts.kyc import KycState, Step, workflow_id

# What compliance/kyc.py (the withdrawal gate) compares a case's state with.
VERIFIED = KycState.VERIFIED

COLUMNS = ("player_id, workflow_id, state, reason_code, reason, sanctions_score, "
           "sanctions_match, document_attempts, provider_check_id, verified_at, created_at, "
           "updated_at")
FIELDS = frozenset({"reason_code", "reason", "sanctions_score", "sanctions_match",
                    "document_attempts", "provider_check_id"})


def get(conn: Connection, player_id: str, *, for_update: bool = False) -> RowMapping | None:
    sql = f"SELECT {COLUMNS} FROM kyc_cases WHERE player_id = :player_id"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql), {"player_id": player_id}).mappings().one_or_none()


def open_case(conn: Connection, player_id: str) -> tuple[RowMapping | None, RowMapping]:
    """Start (or restart after `expired`) the player's case: (before, after).

    A case that is under way or finished otherwise is left as it is (before is after)."""
    before = get(conn, player_id, for_update=True)
    if before is not None and before["state"] != KycState.EXPIRED:
        return before, before
    after = conn.execute(text(f"""
        INSERT INTO kyc_cases (player_id, workflow_id, state)
        VALUES (:player_id, :workflow_id, :state)
        ON CONFLICT (player_id) DO UPDATE
           SET state = :state, reason_code = NULL, reason = NULL, sanctions_score = NULL,
               sanctions_match = NULL, document_attempts = 0, provider_check_id = NULL,
               updated_at = now()
        RETURNING {COLUMNS}"""),
        {"player_id": player_id, "workflow_id": workflow_id(player_id),
         "state": KycState.PENDING.value}).mappings().one()
    _history(conn, player_id, KycState.PENDING, Step.OPENED, {})
    return before, after


def transition(conn: Connection, player_id: str, *, state: KycState, step: str,
               detail: dict[str, Any] | None = None,
               **fields: Any) -> tuple[RowMapping, RowMapping] | None:
    """Move an unfinished case to `state` (setting `fields` too) and append a history row:
    (before, after), or None when the case is finished (a retried or late activity)."""
    before = get(conn, player_id, for_update=True)
    if before is None or KycState(before["state"]).final:
        return None
    unknown = set(fields) - FIELDS
    if unknown:
        raise ValueError(f"unknown kyc case fields: {sorted(unknown)}")
    assignments = "".join(f", {name} = :{name}" for name in fields)
    verified = ", verified_at = now()" if state == KycState.VERIFIED else ""
    after = conn.execute(text(f"""
        UPDATE kyc_cases SET state = :state, updated_at = now(){assignments}{verified}
        WHERE player_id = :player_id RETURNING {COLUMNS}"""),
        {"player_id": player_id, "state": KycState(state).value, **fields}).mappings().one()
    _history(conn, player_id, KycState(state), step, detail or {})
    return before, after


def _history(conn: Connection, player_id: str, state: KycState, step: str,
             detail: dict[str, Any]) -> None:
    conn.execute(text("""INSERT INTO kyc_history (player_id, state, step, detail)
                         VALUES (:player_id, :state, :step, CAST(:detail AS jsonb))"""),
                 {"player_id": player_id, "state": state.value, "step": str(step),
                  "detail": json.dumps(detail, default=str)})


def history(conn: Connection, player_id: str) -> list[RowMapping]:
    return list(conn.execute(text("""
        SELECT state, step, detail, created_at FROM kyc_history
        WHERE player_id = :player_id ORDER BY id"""), {"player_id": player_id}).mappings())


def kyc_summary(conn: Connection, player_id: str) -> dict[str, Any]:
    """The player's KYC status and its history, as the player view shows it."""
    case = get(conn, player_id)
    verified_at = None if case is None else case["verified_at"]
    return {
        "status": "not_started" if case is None else case["state"],
        "reason_code": None if case is None else case["reason_code"],
        "verified_at": None if verified_at is None else verified_at.isoformat(),
        "history": [{"state": row["state"], "step": row["step"], "detail": row["detail"],
                     "at": row["created_at"].isoformat()} for row in history(conn, player_id)],
    }


def kyc_summaries(conn: Connection, player_ids: list[str]) -> dict[str, dict[str, Any]]:
    """`kyc_summary` of many players in two statements (a page of the players list)."""
    cases = {row["player_id"]: row for row in conn.execute(text(
        f"SELECT {COLUMNS} FROM kyc_cases WHERE player_id = ANY(:ids)"),
        {"ids": player_ids}).mappings()}
    histories: dict[str, list[dict[str, Any]]] = {player_id: [] for player_id in player_ids}
    for row in conn.execute(text("""
            SELECT player_id, state, step, detail, created_at FROM kyc_history
            WHERE player_id = ANY(:ids) ORDER BY player_id, id"""),
            {"ids": player_ids}).mappings():
        histories[row["player_id"]].append({"state": row["state"], "step": row["step"],
                                            "detail": row["detail"],
                                            "at": row["created_at"].isoformat()})
    summaries = {}
    for player_id in player_ids:
        case = cases.get(player_id)
        verified_at = None if case is None else case["verified_at"]
        summaries[player_id] = {
            "status": "not_started" if case is None else case["state"],
            "reason_code": None if case is None else case["reason_code"],
            "verified_at": None if verified_at is None else verified_at.isoformat(),
            "history": histories[player_id],
        }
    return summaries
