"""The reconciliation_runs and reconciliation_breaks tables, and the read-only queries that gather
our side and the ledger side of a reconciliation window: SQL only.

Reads (never writes) deposits, withdrawals, withdrawal_payouts and the ledger's tables: a
reconciliation looks at what the other capabilities recorded. commands/reconciliation.py writes
the runs and breaks with their audit records and outbox events.
Must never: call the gateway, post to the ledger, write audit or outbox records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, text

RUN_COLUMNS = ("id, seq, provider, window_start, window_end, as_of, verdict, items, matched, "
               "matched_amount, total_amount, pending, repaired, fees_booked, gateway_rows, "
               "counts, residual, error, created_by, created_at")
BREAK_COLUMNS = ("id, run_id, last_run_id, class, business_key, partner_id, currency, amount, "
                 "delta, evidence, repair, status, resolution, resolved_by, resolved_at, "
                 "created_at")


# --- our side ------------------------------------------------------------------------------

def deposits(conn: Connection, *, start: datetime, end: datetime,
             ids: Sequence[str] = ()) -> list[RowMapping]:
    """Deposits inserted in [start, end), and those with the given ids (claimed by gateway
    records of the window) wherever they fall."""
    return list(conn.execute(text("""
        SELECT id, partner_id, player_id, amount, currency, status, gateway,
               gateway_payment_intent, gateway_charge, created_at, updated_at
        FROM deposits
        WHERE (created_at >= :start AND created_at < :end) OR id = ANY(:ids)
        ORDER BY created_at, id"""),
        {"start": start, "end": end, "ids": list(ids)}).mappings())


def withdrawals(conn: Connection, *, start: datetime, end: datetime,
                ids: Sequence[str] = ()) -> list[RowMapping]:
    return list(conn.execute(text("""
        SELECT id, partner_id, player_id, amount, currency, state, paid_amount, created_at,
               updated_at
        FROM withdrawals
        WHERE (created_at >= :start AND created_at < :end) OR id = ANY(:ids)
        ORDER BY created_at, id"""),
        {"start": start, "end": end, "ids": list(ids)}).mappings())


def withdrawal_legs(conn: Connection, withdrawal_ids: Sequence[str]) -> list[RowMapping]:
    return list(conn.execute(text("""
        SELECT withdrawal_id, n, method, deposit_id, payment_ref, amount, currency, state,
               gateway_ref, first_sent_at
        FROM withdrawal_payouts WHERE withdrawal_id = ANY(:ids)
        ORDER BY withdrawal_id, n"""), {"ids": list(withdrawal_ids)}).mappings())


def clearing_postings(conn: Connection, *, provider: str,
                      references: Sequence[str]) -> list[RowMapping]:
    """Every entry on the provider's clearing accounts of a transaction whose reference is one
    of `references` (deposit ids, withdrawal ids, charge ids of booked fees)."""
    return list(conn.execute(text("""
        SELECT t.id AS transaction_id, t.kind, t.reference, t.idempotency_key, e.amount,
               a.currency
        FROM ledger_transactions t
        JOIN ledger_entries e ON e.transaction_id = t.id
        JOIN ledger_accounts a ON a.id = e.account_id
        WHERE t.reference = ANY(:refs) AND a.owner = :owner AND a.type = 'gateway_clearing'
        ORDER BY t.id"""), {"refs": list(references), "owner": f"gateway:{provider}"}).mappings())


# --- runs ----------------------------------------------------------------------------------

def insert_run(conn: Connection, run: dict[str, Any]) -> RowMapping:
    params = {**run, "counts": json.dumps(run.get("counts", {})),
              "residual": json.dumps(run.get("residual", {}))}
    return conn.execute(text(f"""
        INSERT INTO reconciliation_runs (id, provider, window_start, window_end, as_of, verdict,
            items, matched, matched_amount, total_amount, pending, repaired, fees_booked,
            gateway_rows, counts, residual, error, created_by)
        VALUES (:id, :provider, :window_start, :window_end, :as_of, :verdict, :items, :matched,
            :matched_amount, :total_amount, :pending, :repaired, :fees_booked, :gateway_rows,
            CAST(:counts AS jsonb), CAST(:residual AS jsonb), :error, :created_by)
        RETURNING {RUN_COLUMNS}"""), params).mappings().one()


def get_run(conn: Connection, run_id: str) -> RowMapping | None:
    return conn.execute(text(f"SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id = :id"),
                        {"id": run_id}).mappings().one_or_none()


def list_runs(conn: Connection, *, limit: int, before_seq: int | None = None) -> list[RowMapping]:
    return list(conn.execute(text(f"""
        SELECT {RUN_COLUMNS} FROM reconciliation_runs
        WHERE (CAST(:before AS bigint) IS NULL OR seq < :before)
        ORDER BY seq DESC LIMIT :limit"""), {"before": before_seq, "limit": limit}).mappings())


def last_run(conn: Connection, provider: str) -> RowMapping | None:
    return conn.execute(text(f"""
        SELECT {RUN_COLUMNS} FROM reconciliation_runs
        WHERE provider = :provider AND verdict <> 'incomplete'
        ORDER BY window_end DESC, seq DESC LIMIT 1"""),
        {"provider": provider}).mappings().one_or_none()


# --- breaks --------------------------------------------------------------------------------

def upsert_break(conn: Connection, item: dict[str, Any]) -> tuple[RowMapping, bool]:
    """The open break of (class, business key), seen by this run: (row, True) when new."""
    params = {**item, "evidence": json.dumps(item["evidence"], sort_keys=True, default=str)}
    row = conn.execute(text(f"""
        UPDATE reconciliation_breaks
        SET last_run_id = :run_id, evidence = CAST(:evidence AS jsonb), amount = :amount,
            delta = :delta, repair = :repair
        WHERE class = :class AND business_key = :business_key AND status = 'open'
        RETURNING {BREAK_COLUMNS}"""), params).mappings().one_or_none()
    if row is not None:
        return row, False
    return conn.execute(text(f"""
        INSERT INTO reconciliation_breaks (run_id, last_run_id, class, business_key, partner_id,
            currency, amount, delta, evidence, repair)
        VALUES (:run_id, :run_id, :class, :business_key, :partner_id, :currency, :amount,
            :delta, CAST(:evidence AS jsonb), :repair)
        RETURNING {BREAK_COLUMNS}"""), params).mappings().one(), True


def get_break(conn: Connection, break_id: int, *, for_update: bool = False) -> RowMapping | None:
    sql = f"SELECT {BREAK_COLUMNS} FROM reconciliation_breaks WHERE id = :id"
    return conn.execute(text(sql + (" FOR UPDATE" if for_update else "")),
                        {"id": break_id}).mappings().one_or_none()


def list_breaks(conn: Connection, *, status: str | None, run_id: str | None, limit: int,
                after_id: int | None = None, class_: str | None = None) -> list[RowMapping]:
    return list(conn.execute(text(f"""
        SELECT {BREAK_COLUMNS} FROM reconciliation_breaks
        WHERE (CAST(:status AS text) IS NULL OR status = :status)
          AND (CAST(:run AS text) IS NULL OR last_run_id = :run OR run_id = :run)
          AND (CAST(:class AS text) IS NULL OR class = :class)
          AND (CAST(:after AS bigint) IS NULL OR id > :after)
        ORDER BY id LIMIT :limit"""),
        {"status": status, "run": run_id, "class": class_, "after": after_id,
         "limit": limit}).mappings())


def close_break(conn: Connection, break_id: int, *, status: str, resolution: str,
                actor: str) -> RowMapping | None:
    """An open break repaired or resolved; None when it is not open (any more)."""
    return conn.execute(text(f"""
        UPDATE reconciliation_breaks
        SET status = :status, resolution = :resolution, resolved_by = :actor,
            resolved_at = now()
        WHERE id = :id AND status = 'open'
        RETURNING {BREAK_COLUMNS}"""),
        {"id": break_id, "status": status, "resolution": resolution,
         "actor": actor}).mappings().one_or_none()
