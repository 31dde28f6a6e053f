"""Reading the three sides of a window into the engine's records.

  - the gateway: payment intents (with their charge's fee from the balance transactions),
    refunds, payouts and disputes, every page through the adapter's list APIs, created from the
    window's start (less a margin) up to the window's cut-off; our key read from the metadata
    we sent;
  - ours: deposits and withdrawals inserted in the window, plus those the gateway records claim;
    a withdrawal's refund / payout legs;
  - the ledger: the postings on the provider's clearing account referencing those deposits,
    withdrawals and charges.
No business decision here: reconciliation.engine decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from adapters.gateway import PaymentGateway
from reconciliation.model import (
    GatewayKind,
    GatewayRecord,
    LedgerKind,
    LedgerRecord,
    OurKind,
    OurRecord,
    Window,
)
from store import reconciliation as store

DEPOSIT_KEY = "settlepay_deposit_id"
LEDGER_KINDS = {"deposit": LedgerKind.DEPOSIT_CREDIT, "withdrawal": LedgerKind.WITHDRAWAL_CLEAR,
                "gateway_fee": LedgerKind.FEE}
Progress = Callable[[str, int], None]     # (what is being read, rows read so far)


@dataclass
class Sides:
    gateway: list[GatewayRecord] = field(default_factory=list)
    ours: list[OurRecord] = field(default_factory=list)
    ledger: list[LedgerRecord] = field(default_factory=list)
    gateway_rows: int = 0


def at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def read_gateway(gateway: PaymentGateway, *, since: int, until: int | None = None,
                 progress: Progress | None = None) -> tuple[list[GatewayRecord], int]:
    """Every gateway record created in [since, until); (records, rows read)."""
    rows = 0

    def tick(what: str) -> None:
        nonlocal rows
        rows += 1
        if progress is not None and rows % 100 == 0:
            progress(what, rows)

    window = {"created_gte": since, "created_lt": until}
    fees: dict[str, tuple[int, str]] = {}
    for txn in gateway.iter_balance_transactions(**window):
        tick("balance transactions")
        if txn.source and txn.type == "charge":
            fees[txn.source] = (txn.fee, txn.id)
    out: list[GatewayRecord] = []
    for pi in gateway.list_payment_intents(**window):
        tick("payment intents")
        fee, txn_id = fees.get(pi.latest_charge or "", (0, None))
        out.append(GatewayRecord(
            GatewayKind.PAYMENT, pi.id, pi.status, pi.amount, pi.currency, pi.created or 0,
            pi.metadata.get(DEPOSIT_KEY), payment_intent=pi.id, charge=pi.latest_charge,
            fee=fee if pi.succeeded else 0, balance_transaction=txn_id))
    for refund in gateway.list_refunds(**window):
        tick("refunds")
        out.append(GatewayRecord(
            GatewayKind.REFUND, refund.id, refund.status, refund.amount, refund.currency,
            refund.created or 0, _leg_key(refund.metadata),
            payment_intent=refund.payment_intent, charge=refund.charge))
    for payout in gateway.list_payouts(**window):
        tick("payouts")
        out.append(GatewayRecord(
            GatewayKind.PAYOUT, payout.id, payout.status, payout.amount, payout.currency,
            payout.created or 0, _leg_key(payout.metadata)))
    for dispute in gateway.list_disputes(**window):
        tick("disputes")
        out.append(GatewayRecord(
            GatewayKind.DISPUTE, dispute.id, dispute.status, dispute.amount, dispute.currency,
            dispute.created, None, payment_intent=dispute.payment_intent,
            charge=dispute.charge, fee=dispute.fee))
    if progress is not None:
        progress("done", rows)
    return out, rows


def _leg_key(metadata: dict[str, str]) -> str | None:
    wid, leg = metadata.get("withdrawal_id"), metadata.get("leg")
    return f"{wid}:{leg}" if wid and leg else None


def read_ours_and_ledger(engine: Engine, *, provider: str, window: Window,
                         gateway: list[GatewayRecord]) -> tuple[list[OurRecord],
                                                                list[LedgerRecord]]:
    deposit_ids = sorted({g.key for g in gateway if g.kind is GatewayKind.PAYMENT and g.key})
    withdrawal_ids = sorted({g.key.rpartition(":")[0] for g in gateway
                             if g.kind in (GatewayKind.REFUND, GatewayKind.PAYOUT) and g.key})
    start, end = at(window.start), at(window.end)
    ours: list[OurRecord] = []
    with engine.connect() as conn:
        deposit_rows = store.deposits(conn, start=start, end=end, ids=deposit_ids)
        withdrawal_rows = store.withdrawals(conn, start=start, end=end, ids=withdrawal_ids)
        legs = store.withdrawal_legs(conn, [w["id"] for w in withdrawal_rows])
        for d in deposit_rows:
            ours.append(OurRecord(OurKind.DEPOSIT, d["id"], d["status"], d["amount"],
                                  d["currency"], _epoch(d["created_at"]) or 0,
                                  gateway_ref=d["gateway_payment_intent"],
                                  updated=_epoch(d["updated_at"]), partner_id=d["partner_id"]))
        states = {}
        for w in withdrawal_rows:
            states[w["id"]] = w
            ours.append(OurRecord(OurKind.WITHDRAWAL, w["id"], w["state"], w["amount"],
                                  w["currency"], _epoch(w["created_at"]) or 0,
                                  updated=_epoch(w["updated_at"]), partner_id=w["partner_id"]))
        for leg in legs:
            parent = states[leg["withdrawal_id"]]
            ours.append(OurRecord(
                OurKind(leg["method"]), f"{leg['withdrawal_id']}:{leg['n']}", leg["state"],
                leg["amount"], leg["currency"],
                _epoch(leg["first_sent_at"]) or _epoch(parent["created_at"]) or 0,
                gateway_ref=leg["gateway_ref"], parent=leg["withdrawal_id"],
                parent_status=parent["state"], updated=_epoch(parent["updated_at"]),
                partner_id=parent["partner_id"]))
        references = ([d["id"] for d in deposit_rows] + list(states)
                      + [g.charge for g in gateway if g.kind is GatewayKind.PAYMENT and g.charge])
        postings = store.clearing_postings(conn, provider=provider, references=references)
    ledger = []
    for p in postings:
        kind = LEDGER_KINDS.get(p["kind"])
        if kind is None:
            continue
        amount = -p["amount"] if kind is LedgerKind.DEPOSIT_CREDIT else p["amount"]
        ledger.append(LedgerRecord(kind, p["reference"], amount, p["currency"].strip(),
                                   p["transaction_id"], p["idempotency_key"]))
    return ours, ledger
