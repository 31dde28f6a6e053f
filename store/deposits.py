"""The deposits and stripe_events tables: SQL only.

State changes are guarded in the WHERE clause (a finished deposit never changes again, except
the one documented way back: a payment the gateway reports succeeded after its deposit failed is
credited, `mark_succeeded(after_close=True)`), so a retried activity or a late webhook cannot move
a deposit backwards. commands/deposits.py calls these and writes the audit record and outbox
event in the same transaction.
Must never: call the gateway, post to the ledger, write audit or outbox records, or decide
whether a deposit may happen.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from store.pagination import Listing
from workflows.contracts.deposit import DepositStatus, workflow_id
from workflows.contracts.deposit import deposit_id_for as deposit_id_for  # callers' old name

COLUMNS = ("id, workflow_id, player_id, partner_id, amount, currency, payment_method, status, "
           "failure_code, failure_reason, review_code, review_reason, gateway, "
           "gateway_payment_intent, gateway_charge, next_action, ledger_transaction_id, "
           "created_by, created_at, updated_at, succeeded_at, failed_at")
# GET /v1/deposits pages (store/pagination.py) on the deposits_list* indexes (migration 0015).
LISTING = Listing("deposits", COLUMNS)


def insert(conn: Connection, *, deposit_id: str, player_id: str, partner_id: str, amount: int,
           currency: str, payment_method: str, created_by: str) -> tuple[RowMapping, bool]:
    """Insert a pending deposit; (row, True) if new, (existing row, False) if the id exists."""
    row = conn.execute(text(f"""
        INSERT INTO deposits (id, workflow_id, player_id, partner_id, amount, currency,
                              payment_method, created_by)
        VALUES (:id, :workflow_id, :player_id, :partner_id, :amount, :currency, :payment_method,
                :created_by)
        ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"""),
        {"id": deposit_id, "workflow_id": workflow_id(deposit_id), "player_id": player_id,
         "partner_id": partner_id, "amount": amount, "currency": currency,
         "payment_method": payment_method, "created_by": created_by}).mappings().one_or_none()
    if row is not None:
        return row, True
    existing = get(conn, deposit_id)
    assert existing is not None
    return existing, False


def get(conn: Connection, deposit_id: str, *, partner_id: str | None = None,
        for_update: bool = False) -> RowMapping | None:
    sql = f"SELECT {COLUMNS} FROM deposits WHERE id = :id"
    if partner_id is not None:
        sql += " AND partner_id = :partner_id"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql), {"id": deposit_id,
                                    "partner_id": partner_id}).mappings().one_or_none()


def by_payment_intent(conn: Connection, payment_intent: str) -> RowMapping | None:
    return conn.execute(text(f"SELECT {COLUMNS} FROM deposits WHERE gateway_payment_intent = :pi"),
                        {"pi": payment_intent}).mappings().one_or_none()


def _transition(conn: Connection, deposit_id: str, assignments: str, params: dict[str, Any],
                *, from_failed: bool = False) -> RowMapping | None:
    """Apply a change to an unfinished deposit (or, `from_failed`, to a failed one too); None
    when the deposit is finished (or unknown)."""
    closed = "('succeeded')" if from_failed else "('succeeded', 'failed')"
    return conn.execute(text(f"""
        UPDATE deposits SET {assignments}, updated_at = now()
        WHERE id = :id AND status NOT IN {closed}
        RETURNING {COLUMNS}"""), {"id": deposit_id, **params}).mappings().one_or_none()


def mark_payment(conn: Connection, deposit_id: str, *, status: str, payment_intent: str,
                 charge: str | None, next_action: dict[str, Any] | None) -> RowMapping | None:
    assert status in (DepositStatus.PROCESSING, DepositStatus.REQUIRES_ACTION)
    return _transition(conn, deposit_id, """
        status = :status, gateway_payment_intent = :pi,
        gateway_charge = COALESCE(:charge, gateway_charge),
        next_action = CAST(:next_action AS jsonb)""",
        {"status": str(status), "pi": payment_intent, "charge": charge,
         "next_action": None if next_action is None else json.dumps(next_action)})


def mark_succeeded(conn: Connection, deposit_id: str, *, payment_intent: str, charge: str | None,
                   ledger_transaction_id: int, after_close: bool = False) -> RowMapping | None:
    """Succeeded with its ledger credit. `after_close`: also a deposit that had failed (the
    gateway says the payment succeeded after all); its failure fields are cleared (the audit
    record keeps them)."""
    return _transition(conn, deposit_id, """
        status = 'succeeded', gateway_payment_intent = :pi,
        gateway_charge = COALESCE(:charge, gateway_charge), next_action = NULL,
        ledger_transaction_id = :txn, succeeded_at = now(),
        failure_code = NULL, failure_reason = NULL, failed_at = NULL""",
        {"pi": payment_intent, "charge": charge, "txn": ledger_transaction_id},
        from_failed=after_close)


def mark_failed(conn: Connection, deposit_id: str, *, code: str, reason: str,
                payment_intent: str | None) -> RowMapping | None:
    return _transition(conn, deposit_id, """
        status = 'failed', failure_code = :code, failure_reason = :reason, next_action = NULL,
        gateway_payment_intent = COALESCE(:pi, gateway_payment_intent), failed_at = now()""",
        {"code": code, "reason": reason, "pi": payment_intent})


def mark_review(conn: Connection, deposit_id: str, *, code: str, reason: str,
                payment_intent: str | None) -> RowMapping | None:
    return _transition(conn, deposit_id, """
        status = 'review', review_code = :code, review_reason = :reason, next_action = NULL,
        gateway_payment_intent = COALESCE(:pi, gateway_payment_intent)""",
        {"code": code, "reason": reason, "pi": payment_intent})


def as_record(row: RowMapping) -> dict[str, Any]:
    """The row as plain JSON-able values (audit before/after)."""
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value)
            for key, value in row.items()}


# --- stripe events -------------------------------------------------------------------------

def record_event(conn: Connection, *, event_id: str, type_: str, object_id: str | None,
                 payload: dict[str, Any]) -> tuple[str, bool]:
    """Store an event the first time it is seen: (its outcome so far, whether it is new)."""
    inserted = conn.execute(text("""
        INSERT INTO stripe_events (id, type, object_id, payload)
        VALUES (:id, :type, :object_id, CAST(:payload AS jsonb))
        ON CONFLICT (id) DO NOTHING RETURNING outcome"""),
        {"id": event_id, "type": type_, "object_id": object_id,
         "payload": json.dumps(payload)}).scalar_one_or_none()
    if inserted is not None:
        return inserted, True
    return conn.execute(text("SELECT outcome FROM stripe_events WHERE id = :id"),
                        {"id": event_id}).scalar_one(), False


def event_outcome_for_update(conn: Connection, event_id: str) -> str | None:
    """The event's stored outcome, its row locked until the transaction ends."""
    return conn.execute(text("SELECT outcome FROM stripe_events WHERE id = :id FOR UPDATE"),
                        {"id": event_id}).scalar_one_or_none()


def set_event_outcome(conn: Connection, event_id: str, outcome: str,
                      deposit_id: str | None) -> None:
    conn.execute(text("""
        UPDATE stripe_events SET outcome = :outcome, deposit_id = :deposit_id,
                                 processed_at = now()
        WHERE id = :id"""), {"id": event_id, "outcome": outcome, "deposit_id": deposit_id})


def succeeded_event_object(conn: Connection, deposit_id: str) -> dict[str, Any] | None:
    """The PaymentIntent snapshot of a `payment_intent.succeeded` event received for this
    deposit (whatever was done with it), or None. Rare: only a deposit going to review asks."""
    return conn.execute(text("""
        SELECT payload FROM stripe_events
        WHERE type = 'payment_intent.succeeded'
          AND (deposit_id = :id OR payload -> 'metadata' ->> 'settlepay_deposit_id' = :id)
        ORDER BY received_at DESC LIMIT 1"""), {"id": deposit_id}).scalar_one_or_none()
