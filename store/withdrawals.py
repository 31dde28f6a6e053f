"""The withdrawals, withdrawal_steps and withdrawal_payouts tables: SQL only.

A finished withdrawal (paid, cancelled, rejected, failed) never changes again: transitions are
guarded in the WHERE clause, so a retried activity or a late signal cannot move one backwards.
Callers (withdrawal activities, the API) write the audit record and outbox event in the same
transaction. Must never: call the gateway, post to the ledger, or decide what happens next.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import Connection, RowMapping, text

CHECKING, HELD, AWAITING_2FA, AWAITING_APPROVAL = "checking", "held", "awaiting_2fa", "awaiting_approval"
PAYING, PAID, CANCELLED, REJECTED, FAILED = "paying", "paid", "cancelled", "rejected", "failed"
FINAL = (PAID, CANCELLED, REJECTED, FAILED)

COLUMNS = ("id, player_id, partner_id, amount, currency, state, reason_code, reason, second_factor, "
           "attempts_left, paid_amount, workflow_id, created_at, updated_at")
PAYOUT_COLUMNS = ("withdrawal_id, n, method, deposit_id, payment_ref, amount, currency, "
                  "idempotency_key, state, gateway_ref, failure")


def withdrawal_id_for(operation_id: str) -> str:
    """The withdrawal id for an API operation (API key + Idempotency-Key): a retried POST finds
    the same row and the same workflow."""
    return "wd_" + hashlib.sha256(operation_id.encode()).hexdigest()[:24]


def workflow_id_for(withdrawal_id: str) -> str:
    return f"withdrawal-{withdrawal_id}"


def insert(conn: Connection, *, withdrawal_id: str, player_id: str, partner_id: str, amount: int,
           currency: str) -> tuple[RowMapping, bool]:
    """Insert a withdrawal in `checking`: (row, True) if new, (existing row, False) otherwise."""
    row = conn.execute(text(f"""
        INSERT INTO withdrawals (id, player_id, partner_id, amount, currency, state, workflow_id)
        VALUES (:id, :player_id, :partner_id, :amount, :currency, 'checking', :workflow_id)
        ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"""),
        {"id": withdrawal_id, "player_id": player_id, "partner_id": partner_id, "amount": amount,
         "currency": currency, "workflow_id": workflow_id_for(withdrawal_id)}).mappings().one_or_none()
    if row is not None:
        return row, True
    existing = get(conn, withdrawal_id)
    assert existing is not None
    return existing, False


def get(conn: Connection, withdrawal_id: str, *, partner_id: str | None = None,
        for_update: bool = False) -> RowMapping | None:
    sql = f"SELECT {COLUMNS} FROM withdrawals WHERE id = :id"
    if partner_id is not None:
        sql += " AND partner_id = :partner_id"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql), {"id": withdrawal_id, "partner_id": partner_id}).mappings().one_or_none()


def transition(conn: Connection, withdrawal_id: str, *, state: str, step: str, outcome: str,
               detail: dict[str, Any] | None = None, **fields: Any) -> tuple[RowMapping, RowMapping] | None:
    """Move an unfinished withdrawal to `state` and append its step: (before, after), or None
    when it is already finished."""
    allowed = {"reason_code", "reason", "second_factor", "attempts_left", "paid_amount"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown withdrawal fields: {sorted(unknown)}")
    before = get(conn, withdrawal_id, for_update=True)
    if before is None or before["state"] in FINAL:
        return None
    assignments = "".join(f", {name} = :{name}" for name in fields)
    after = conn.execute(text(f"""
        UPDATE withdrawals SET state = :state, updated_at = now(){assignments}
        WHERE id = :id RETURNING {COLUMNS}"""),
        {"id": withdrawal_id, "state": state, **fields}).mappings().one()
    add_step(conn, withdrawal_id, step, outcome, detail)
    return before, after


def set_attempts_left(conn: Connection, withdrawal_id: str, attempts_left: int) -> None:
    conn.execute(text("""UPDATE withdrawals SET attempts_left = :n, updated_at = now()
                         WHERE id = :id AND state = 'awaiting_2fa'"""),
                 {"n": attempts_left, "id": withdrawal_id})


def add_step(conn: Connection, withdrawal_id: str, step: str, outcome: str,
             detail: dict[str, Any] | None = None) -> None:
    conn.execute(text("""INSERT INTO withdrawal_steps (withdrawal_id, step, outcome, detail)
                         VALUES (:id, :step, :outcome, CAST(:detail AS jsonb))"""),
                 {"id": withdrawal_id, "step": step, "outcome": outcome,
                  "detail": json.dumps(detail or {}, default=str)})


def steps(conn: Connection, withdrawal_id: str) -> list[RowMapping]:
    return list(conn.execute(text("""
        SELECT step, outcome, detail, created_at FROM withdrawal_steps
        WHERE withdrawal_id = :id ORDER BY id"""), {"id": withdrawal_id}).mappings())


# --- the closed-loop plan ---------------------------------------------------------------------

def payouts(conn: Connection, withdrawal_id: str) -> list[RowMapping]:
    return list(conn.execute(text(f"""
        SELECT {PAYOUT_COLUMNS} FROM withdrawal_payouts WHERE withdrawal_id = :id ORDER BY n"""),
        {"id": withdrawal_id}).mappings())


def insert_payouts(conn: Connection, legs: list[dict[str, Any]]) -> None:
    for leg in legs:
        conn.execute(text("""
            INSERT INTO withdrawal_payouts (withdrawal_id, n, method, deposit_id, payment_ref, amount,
                                            currency, idempotency_key)
            VALUES (:withdrawal_id, :n, :method, :deposit_id, :payment_ref, :amount, :currency,
                    :idempotency_key)"""), leg)


def mark_payout(conn: Connection, withdrawal_id: str, n: int, *, state: str,
                gateway_ref: str | None, failure: str | None = None) -> None:
    conn.execute(text("""
        UPDATE withdrawal_payouts SET state = :state, gateway_ref = COALESCE(:ref, gateway_ref),
               failure = :failure, updated_at = now()
        WHERE withdrawal_id = :id AND n = :n AND state = 'planned'"""),
        {"id": withdrawal_id, "n": n, "state": state, "ref": gateway_ref, "failure": failure})


def refundable_deposits(conn: Connection, player_id: str, currency: str, provider: str) -> list[RowMapping]:
    """The player's succeeded deposits in `currency` through `provider`, newest first, with what
    is left to refund on each: the amount less the refunds other withdrawals planned or made
    (a failed refund gave its amount back)."""
    return list(conn.execute(text("""
        SELECT d.id AS deposit_id, d.gateway_payment_intent AS payment_ref, d.payment_method,
               d.amount - COALESCE((SELECT sum(p.amount) FROM withdrawal_payouts p
                                     WHERE p.deposit_id = d.id AND p.state <> 'failed'), 0) AS refundable
          FROM deposits d
         WHERE d.player_id = :player_id AND d.currency = :currency AND d.status = 'succeeded'
           AND d.gateway = :provider AND d.gateway_payment_intent IS NOT NULL
         ORDER BY d.succeeded_at DESC, d.id"""),
        {"player_id": player_id, "currency": currency, "provider": provider}).mappings())


# --- shapes -------------------------------------------------------------------------------------

def as_record(row: RowMapping) -> dict[str, Any]:
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in row.items()}


def resource(row: RowMapping, step_rows: list[RowMapping] | None = None,
             payout_rows: list[RowMapping] | None = None) -> dict[str, Any]:
    """The withdrawal as API clients and outbox consumers see it."""
    body: dict[str, Any] = {
        "id": row["id"], "object": "withdrawal", "state": row["state"], "player_id": row["player_id"],
        "amount": row["amount"], "currency": row["currency"], "paid_amount": row["paid_amount"],
        "reason_code": row["reason_code"], "reason": row["reason"],
        "second_factor": row["second_factor"], "attempts_left": row["attempts_left"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }
    if step_rows is not None:
        body["steps"] = [{"step": s["step"], "outcome": s["outcome"], "detail": s["detail"],
                          "at": s["created_at"].isoformat()} for s in step_rows]
    if payout_rows is not None:
        body["payouts"] = [{"n": p["n"], "method": p["method"], "amount": p["amount"],
                            "currency": p["currency"], "deposit_id": p["deposit_id"],
                            "state": p["state"], "gateway_ref": p["gateway_ref"],
                            "failure": p["failure"]} for p in payout_rows]
    return body
