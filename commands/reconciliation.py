"""Reconciliation commands: every state change of a reconciliation, with its audit record, its
outbox event and, where money moves, its ledger posting, in the caller's transaction.

    record_run      a run's row and its breaks (one open break per class + business key:
                    a rerun updates the open one; a repaired break is recorded `repaired`)
    book_fee        a gateway fee the ledger misses: house revenue -> gateway clearing, ledger
                    key `recon:fee:<charge>` (one posting per charge, whoever books it)
    credit_deposit  a payment the gateway took for a deposit that did not credit it: through
                    the deposit's own `commands.deposits.credit` and its ledger key
    resolve_break   an operator closes an open break, with a reason

`run_payload(row)` / `break_payload(row)` build the resources for the API and the outbox;
`running_payload(...)` a run whose workflow has not recorded it yet.
Must never: open its own transaction, call the gateway, or start a workflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import ledger
import outbox
from commands import deposits
from ledger import AccountRef, Leg, Transfer
from reconciliation.model import Break, BreakStatus, Outcome, Verdict
from settlepay.observability import metrics
from store import deposits as deposit_store
from store import reconciliation as store
from workflows.contracts.deposit import Credit, DepositStatus
from workflows.contracts.reconciliation import RunStatus


class RepairRefused(Exception):
    """A safe repair that turned out not to apply (the state moved on): left for an operator."""


class BreakNotOpen(Exception):
    """The break does not exist, or is no longer open."""


def fee_key(charge: str) -> str:
    return f"recon:fee:{charge}"


def _ts(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def running_payload(run_id: str, *, provider: str, window_start: datetime,
                    window_end: datetime, created_by: str) -> dict[str, Any]:
    """A run its workflow is still working on: no row yet, only what the request fixed."""
    unknown = ("verdict", "as_of", "items", "matched", "pending", "repaired", "fees_booked",
               "gateway_rows", "match_rate_by_count", "matched_amount", "total_amount",
               "match_rate_by_amount", "counts", "residual", "error", "created_at")
    return {"id": run_id, "status": str(RunStatus.RUNNING), "provider": provider,
            "window_start": window_start.isoformat(), "window_end": window_end.isoformat(),
            "created_by": created_by, **dict.fromkeys(unknown)}


def run_payload(row: RowMapping) -> dict[str, Any]:
    items, matched = row["items"], row["matched"]
    return {
        "id": row["id"], "status": str(RunStatus.COMPLETED), "provider": row["provider"],
        "verdict": row["verdict"],
        "window_start": _ts(row["window_start"]), "window_end": _ts(row["window_end"]),
        "as_of": _ts(row["as_of"]), "items": items, "matched": matched,
        "pending": row["pending"], "repaired": row["repaired"],
        "fees_booked": row["fees_booked"],
        "gateway_rows": row["gateway_rows"],
        "match_rate_by_count": 1.0 if items == 0 else round(matched / items, 6),
        "matched_amount": row["matched_amount"], "total_amount": row["total_amount"],
        "match_rate_by_amount": (1.0 if row["total_amount"] == 0
                                 else round(row["matched_amount"] / row["total_amount"], 6)),
        "counts": dict(row["counts"]), "residual": dict(row["residual"]),
        "error": row["error"], "created_by": row["created_by"],
        "created_at": _ts(row["created_at"]),
    }


def break_payload(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"], "run_id": row["run_id"], "last_run_id": row["last_run_id"],
        "class": row["class"], "business_key": row["business_key"],
        "partner_id": row["partner_id"], "currency": row["currency"].strip(),
        "amount": row["amount"], "delta": row["delta"], "evidence": row["evidence"],
        "repair": row["repair"], "status": row["status"], "resolution": row["resolution"],
        "resolved_by": row["resolved_by"], "resolved_at": _ts(row["resolved_at"]),
        "created_at": _ts(row["created_at"]),
    }


def record_run(conn: Connection, *, run: dict[str, Any], outcome: Outcome | None,
               repaired: dict[int, str], actor: str) -> RowMapping:
    """The run's row (verdict after the repairs) and its breaks. `run` carries id, provider,
    window_start/end, as_of, gateway_rows, error; `outcome` None for an incomplete run;
    `repaired` maps a break's index in the outcome to what repaired it."""
    fields: dict[str, Any] = {"items": 0, "matched": 0, "matched_amount": 0, "total_amount": 0,
                              "pending": 0, "repaired": len(repaired), "counts": {},
                              "residual": {}, "verdict": Verdict.INCOMPLETE}
    if outcome is not None and not run.get("error"):
        done = set(repaired)
        fields.update(items=outcome.items, matched=outcome.matched + len(repaired),
                      matched_amount=outcome.matched_amount, total_amount=outcome.total_amount,
                      pending=len(outcome.pending), counts=outcome.counts(),
                      residual={c: v for c, v in outcome.residual(done).items() if v},
                      verdict=outcome.verdict(done))
        _count_run(conn, outcome, items=fields["items"], matched=fields["matched"])
    row = store.insert_run(conn, {"error": None, "fees_booked": 0, **run, **fields,
                                  "created_by": actor})
    for index, item in enumerate(outcome.breaks if outcome is not None else []):
        saved, _ = store.upsert_break(conn, _break_row(row["id"], item))
        if index in repaired:
            store.close_break(conn, saved["id"], status=BreakStatus.REPAIRED,
                              resolution=repaired[index], actor=actor)
            audit.record(conn, actor=actor, action="reconciliation.break.repaired",
                         subject_type="reconciliation_break", subject_id=str(saved["id"]),
                         before={"status": saved["status"]},
                         after={"status": str(BreakStatus.REPAIRED), "class": str(item.cls),
                                "business_key": item.key, "resolution": repaired[index]})
    payload = run_payload(row)
    audit.record(conn, actor=actor, action="reconciliation.run.recorded",
                 subject_type="reconciliation_run", subject_id=row["id"], before=None,
                 after={k: payload[k] for k in ("verdict", "window_start", "window_end", "items",
                                                "matched", "repaired", "counts", "residual")})
    outbox.emit(conn, event_type="reconciliation.run.completed",
                aggregate_type="reconciliation_run", aggregate_id=row["id"], payload=payload)
    return row


def _count_run(conn: Connection, outcome: Outcome, *, items: int, matched: int) -> None:
    """A complete run's match rate (settlepay_reconciliation_items_total{result=matched|
    unmatched}, repaired items matched) and the breaks it found by class
    (settlepay_reconciliation_breaks_total{class}), once the transaction commits."""
    classes = [str(b.cls) for b in outcome.breaks]

    def record() -> None:
        metrics.count(metrics.RECONCILIATION_ITEMS, "matched", matched)
        metrics.count(metrics.RECONCILIATION_ITEMS, "unmatched", max(items - matched, 0))
        for cls in classes:
            metrics.count(metrics.RECONCILIATION_BREAKS, cls)
    metrics.on_commit(conn, record)


def _break_row(run_id: str, item: Break) -> dict[str, Any]:
    partners = {o.get("partner_id") for o in item.ours if o.get("partner_id")}
    return {"run_id": run_id, "class": str(item.cls), "business_key": item.key,
            "partner_id": next(iter(partners)) if len(partners) == 1 else None,
            "currency": item.currency or "XXX", "amount": item.amount, "delta": item.delta,
            "evidence": item.evidence, "repair": None if item.repair is None else str(item.repair)}


def book_fee(conn: Connection, item: Break, *, provider: str, actor: str) -> int:
    """Book the gateway's fee of the payment in `item` (a FEE_MISMATCH with nothing booked):
    house revenue pays it to gateway clearing. Returns the ledger transaction id; the same
    charge's fee is booked once (ledger key `recon:fee:<charge>`)."""
    payment = item.gateway[0]
    charge, fee = payment.get("charge"), int(payment.get("fee") or 0)
    if not charge or fee <= 0:
        raise RepairRefused(f"no fee to book for {item.key}")
    result = ledger.post(conn, Transfer(
        key=fee_key(charge), kind="gateway_fee", reference=charge,
        legs=(Leg(AccountRef.house_revenue(item.currency), -fee),
              Leg(AccountRef.gateway_clearing(provider, item.currency), fee)),
        metadata={"deposit_id": item.key, "payment_intent": payment.get("payment_intent"),
                  "balance_transaction": payment.get("balance_transaction")}))
    if not result.ok:
        raise RepairRefused(f"ledger refused the fee of {charge}: {result.code}")
    audit.record(conn, actor=actor, action="reconciliation.fee.booked", subject_type="deposit",
                 subject_id=item.key, before=None,
                 after={"charge": charge, "fee": fee, "currency": item.currency,
                        "ledger_transaction_id": result.transaction_id})
    return result.transaction_id


def credit_deposit(conn: Connection, item: Break, *, actor: str) -> int:
    """Credit a deposit the gateway charged (CHARGED_NOT_CREDITED) through the deposit's own
    path: `commands.deposits.credit(after_close=True)`, ledger key `deposit-<id>:credit`."""
    row = deposit_store.get(conn, item.key, for_update=True)
    payment = item.gateway[0]
    if row is None or row["status"] == DepositStatus.SUCCEEDED:
        raise RepairRefused(f"deposit {item.key} is not waiting for a credit")
    if (row["amount"], row["currency"]) != (payment["amount"], payment["currency"]):
        raise RepairRefused(f"deposit {item.key} does not match the payment")
    try:
        return deposits.credit(conn, Credit(
            deposit_id=row["id"], player_id=row["player_id"], amount=row["amount"],
            currency=row["currency"], payment_intent=payment["id"],
            charge=payment.get("charge")), actor=actor, after_close=True)
    except deposits.DepositRefused as error:
        raise RepairRefused(str(error)) from error


def resolve_break(conn: Connection, break_id: int, *, reason: str, actor: str) -> RowMapping:
    before = store.get_break(conn, break_id, for_update=True)
    if before is None or before["status"] != BreakStatus.OPEN:
        raise BreakNotOpen(f"break {break_id} is not open")
    after = store.close_break(conn, break_id, status=BreakStatus.RESOLVED, resolution=reason,
                              actor=actor)
    assert after is not None
    audit.record(conn, actor=actor, action="reconciliation.break.resolved",
                 subject_type="reconciliation_break", subject_id=str(break_id),
                 before={"status": before["status"]},
                 after={"status": after["status"], "resolution": reason})
    outbox.emit(conn, event_type="reconciliation.break.resolved",
                aggregate_type="reconciliation_break", aggregate_id=str(break_id),
                payload=break_payload(after))
    return after
