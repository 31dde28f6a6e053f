"""The withdrawals, withdrawal_steps, withdrawal_payouts and player_payout_destinations tables:
SQL only.

A finished withdrawal (paid, cancelled, rejected, failed) never changes again: transitions are
guarded in the WHERE clause, so a retried activity or a late signal cannot move one backwards.
commands/withdrawals.py writes the audit record and outbox event of each change in the same
transaction. Must never: call the gateway, post to the ledger, or decide what happens next.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from store.pagination import Listing
from workflows.contracts.withdrawal import FINAL_STATES, LegState, WithdrawalState, workflow_id

COLUMNS = ("id, player_id, partner_id, amount, currency, state, reason_code, reason, "
           "second_factor, attempts_left, paid_amount, workflow_id, created_at, updated_at")
# GET /v1/withdrawals pages (store/pagination.py) on the withdrawals_list* indexes.
LISTING = Listing("withdrawals", COLUMNS)
PAYOUT_COLUMNS = ("withdrawal_id, n, method, deposit_id, payment_ref, amount, currency, "
                  "idempotency_key, state, gateway_ref, failure, first_sent_at")
_FINAL = tuple(str(state) for state in FINAL_STATES)


def insert(conn: Connection, *, withdrawal_id: str, player_id: str, partner_id: str, amount: int,
           currency: str) -> tuple[RowMapping, bool]:
    """Insert a withdrawal in `checking`: (row, True) if new, (existing row, False) otherwise."""
    row = conn.execute(text(f"""
        INSERT INTO withdrawals (id, player_id, partner_id, amount, currency, state, workflow_id)
        VALUES (:id, :player_id, :partner_id, :amount, :currency, :state, :workflow_id)
        ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"""),
        {"id": withdrawal_id, "player_id": player_id, "partner_id": partner_id,
         "amount": amount, "currency": currency, "state": WithdrawalState.CHECKING,
         "workflow_id": workflow_id(withdrawal_id)}).mappings().one_or_none()
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
    return conn.execute(text(sql), {"id": withdrawal_id,
                                    "partner_id": partner_id}).mappings().one_or_none()


def transition(conn: Connection, withdrawal_id: str, *, state: WithdrawalState, step: str,
               outcome: str, detail: dict[str, Any] | None = None,
               **fields: Any) -> tuple[RowMapping, RowMapping] | None:
    """Move an unfinished withdrawal to `state` and append its step: (before, after), or None
    when it is already finished."""
    allowed = {"reason_code", "reason", "second_factor", "attempts_left", "paid_amount"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown withdrawal fields: {sorted(unknown)}")
    before = get(conn, withdrawal_id, for_update=True)
    if before is None or before["state"] in _FINAL:
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
                         WHERE id = :id AND state = :state"""),
                 {"n": attempts_left, "id": withdrawal_id,
                  "state": WithdrawalState.AWAITING_SECOND_FACTOR})


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


def payout(conn: Connection, withdrawal_id: str, n: int) -> RowMapping | None:
    return conn.execute(text(f"""
        SELECT {PAYOUT_COLUMNS} FROM withdrawal_payouts WHERE withdrawal_id = :id AND n = :n"""),
        {"id": withdrawal_id, "n": n}).mappings().one_or_none()


def insert_payouts(conn: Connection, legs: list[dict[str, Any]]) -> None:
    for leg in legs:
        conn.execute(text("""
            INSERT INTO withdrawal_payouts (withdrawal_id, n, method, deposit_id, payment_ref,
                                            amount, currency, idempotency_key)
            VALUES (:withdrawal_id, :n, :method, :deposit_id, :payment_ref, :amount, :currency,
                    :idempotency_key)"""), leg)


def mark_sending(conn: Connection, withdrawal_id: str, n: int) -> RowMapping | None:
    """The leg as it is about to go to the gateway, `first_sent_at` set on its first send."""
    return conn.execute(text(f"""
        UPDATE withdrawal_payouts SET first_sent_at = COALESCE(first_sent_at, now())
        WHERE withdrawal_id = :id AND n = :n RETURNING {PAYOUT_COLUMNS}"""),
        {"id": withdrawal_id, "n": n}).mappings().one_or_none()


def mark_payout(conn: Connection, withdrawal_id: str, n: int, *, state: LegState,
                gateway_ref: str | None, failure: str | None = None) -> bool:
    """Record a planned leg's final gateway answer; False when it was already recorded."""
    return conn.execute(text("""
        UPDATE withdrawal_payouts SET state = :state, gateway_ref = COALESCE(:ref, gateway_ref),
               failure = :failure, updated_at = now()
        WHERE withdrawal_id = :id AND n = :n AND state = 'planned' RETURNING n"""),
        {"id": withdrawal_id, "n": n, "state": state, "ref": gateway_ref,
         "failure": failure}).scalar() is not None


def cancel_planned_payouts(conn: Connection, withdrawal_id: str, failure: str) -> list[int]:
    """Every leg still `planned` becomes `cancelled` (its refundable amount comes back)."""
    return list(conn.execute(text("""
        UPDATE withdrawal_payouts SET state = 'cancelled', failure = :failure, updated_at = now()
        WHERE withdrawal_id = :id AND state = 'planned' RETURNING n"""),
        {"id": withdrawal_id, "failure": failure}).scalars())


def refundable_deposits(conn: Connection, player_id: str, currency: str,
                        provider: str) -> list[RowMapping]:
    """The player's succeeded deposits in `currency` through `provider`, newest first, with what
    is left to refund on each: the amount less the refunds other withdrawals planned or made
    (a failed refund, or a leg never sent, gave its amount back)."""
    return list(conn.execute(text("""
        SELECT d.id AS deposit_id, d.gateway_payment_intent AS payment_ref, d.payment_method,
               d.amount - COALESCE((SELECT sum(p.amount) FROM withdrawal_payouts p
                                     WHERE p.deposit_id = d.id
                                       AND p.state IN ('planned', 'confirmed')), 0) AS refundable
          FROM deposits d
         WHERE d.player_id = :player_id AND d.currency = :currency AND d.status = 'succeeded'
           AND d.gateway = :provider AND d.gateway_payment_intent IS NOT NULL
         ORDER BY d.succeeded_at DESC, d.id"""),
        {"player_id": player_id, "currency": currency, "provider": provider}).mappings())


# --- the player's payout destinations ----------------------------------------------------------

def add_destination(conn: Connection, player_id: str, destination: str,
                    created_by: str) -> RowMapping | None:
    """Record a destination; None when the player already has it."""
    return conn.execute(text("""
        INSERT INTO player_payout_destinations (player_id, destination, created_by)
        VALUES (:player_id, :destination, :created_by) ON CONFLICT DO NOTHING
        RETURNING player_id, destination, created_by, created_at"""),
        {"player_id": player_id, "destination": destination,
         "created_by": created_by}).mappings().one_or_none()


def destinations(conn: Connection, player_id: str) -> list[RowMapping]:
    return list(conn.execute(text("""
        SELECT player_id, destination, created_by, created_at FROM player_payout_destinations
        WHERE player_id = :player_id ORDER BY created_at, destination"""),
        {"player_id": player_id}).mappings())


def has_destination(conn: Connection, player_id: str, destination: str) -> bool:
    return conn.execute(text("""
        SELECT 1 FROM player_payout_destinations
        WHERE player_id = :player_id AND destination = :destination"""),
        {"player_id": player_id, "destination": destination}).scalar() is not None
