"""Three-way matching and break classification: pure, no I/O, deterministic.

`reconcile(gateway, ours, ledger, window=..., as_of=...)` groups every record by OUR business
key (the deposit id, or `<withdrawal id>:<leg>`, carried to the gateway in metadata and in the
idempotency key), so a gateway record is claimed by exactly one business operation and never
matched on amount and date. A key belongs to the window when its anchor (the insertion time of
our record, else the gateway's creation time) falls in [start, end): a closed window always
examines the same keys. A key whose latest activity is younger than `grace_seconds` is pending,
not a break, while its outcome may still be on its way.

Sign convention of `Break.delta` (what the gateway owes us): a payment +amount, a refund or
payout -amount, a fee -fee, a dispute -(amount + fee); the ledger's clearing postings likewise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from reconciliation.model import (
    Break,
    BreakClass,
    GatewayKind,
    GatewayRecord,
    LedgerKind,
    LedgerRecord,
    OurKind,
    OurRecord,
    Outcome,
    Repair,
    Window,
)

DEPOSIT_OPEN = ("pending", "requires_action", "processing", "review")
LEG_CONFIRMED = "confirmed"
LEG_NOT_SENT = ("planned", "cancelled", "failed")
WITHDRAWAL_FINAL = ("paid", "cancelled", "rejected", "failed")


def reconcile(gateway: Iterable[GatewayRecord], ours: Iterable[OurRecord],
              ledger: Iterable[LedgerRecord], *, window: Window, as_of: int,
              grace_seconds: int = 900, hold_max_seconds: int = 3 * 86400,
              book_fees: bool = False) -> Outcome:
    """`book_fees`: a matched payment whose fee the ledger has not booked yet is matched and
    its fee listed in `Outcome.fees_due` (the run books it); otherwise it is a FEE_MISMATCH
    break, safe to repair by booking it."""
    idx = _Index(gateway, ours, ledger)
    out = Outcome(window=window, as_of=as_of)
    fresh = as_of - grace_seconds

    for key in sorted(idx.deposit_keys()):
        deposit = idx.deposits.get(key)
        payments = idx.payments.get(key, [])
        anchor = deposit.created if deposit else min(p.created for p in payments)
        if window.holds(anchor):
            _deposit(out, idx, key, deposit, payments, fresh, as_of - hold_max_seconds,
                     book_fees)

    for wid in sorted(idx.withdrawal_ids()):
        withdrawal = idx.withdrawals.get(wid)
        legs = idx.legs.get(wid, [])
        anchors = [withdrawal.created] if withdrawal else [leg.created for leg in legs] or [
            g.created for k in idx.gateway_legs_of(wid) for g in idx.gateway_legs[k]]
        if window.holds(min(anchors)):
            _withdrawal(out, idx, wid, withdrawal, legs, fresh, as_of - hold_max_seconds)

    for record in sorted(idx.unclaimed, key=lambda g: (g.created, g.id)):
        if window.holds(record.created):
            out.items += 1
            out.total_amount += record.amount
            _add(out, Break(BreakClass.UNCLASSIFIED, record.id, record.currency, record.amount,
                            gateway=[record.evidence()],
                            detail=f"a gateway {record.kind} none of our records claims",
                            delta=_gateway_effect(record)))
    return out


class _Index:
    """Every record by the key that claims it; each gateway record is claimed at most once."""

    def __init__(self, gateway: Iterable[GatewayRecord], ours: Iterable[OurRecord],
                 ledger: Iterable[LedgerRecord]) -> None:
        self.payments: dict[str, list[GatewayRecord]] = defaultdict(list)
        self.gateway_legs: dict[str, list[GatewayRecord]] = defaultdict(list)
        self.disputes: dict[str, list[GatewayRecord]] = defaultdict(list)   # by payment intent
        self.refunds_by_intent: dict[str, list[GatewayRecord]] = defaultdict(list)
        self.by_id: dict[str, GatewayRecord] = {}
        self.unclaimed: list[GatewayRecord] = []
        loose: list[GatewayRecord] = []
        for g in gateway:
            self.by_id[g.id] = g
            if g.kind is GatewayKind.PAYMENT and g.key:
                self.payments[g.key].append(g)
            elif g.kind in (GatewayKind.REFUND, GatewayKind.PAYOUT) and g.key:
                self.gateway_legs[g.key].append(g)
            elif g.kind is GatewayKind.DISPUTE and g.payment_intent:
                self.disputes[g.payment_intent].append(g)
            else:
                loose.append(g)
        self.intent_key = {p.id: key for key, ps in self.payments.items() for p in ps}
        self.leg_keys: dict[str, list[str]] = defaultdict(list)    # withdrawal id -> leg keys
        for key in self.gateway_legs:
            self.leg_keys[key.rpartition(":")[0]].append(key)
        for g in loose:   # a refund nobody of ours sent, on one of our payments: claimed there
            if g.kind is GatewayKind.REFUND and g.payment_intent in self.intent_key:
                self.refunds_by_intent[g.payment_intent].append(g)
            else:
                self.unclaimed.append(g)
        self.deposits: dict[str, OurRecord] = {}
        self.withdrawals: dict[str, OurRecord] = {}
        self.legs: dict[str, list[OurRecord]] = defaultdict(list)
        for o in ours:
            if o.kind is OurKind.DEPOSIT:
                self.deposits[o.key] = o
            elif o.kind is OurKind.WITHDRAWAL:
                self.withdrawals[o.key] = o
            else:
                self.legs[o.parent or o.key.rpartition(":")[0]].append(o)
        self.credits: dict[str, list[LedgerRecord]] = defaultdict(list)
        self.clears: dict[str, list[LedgerRecord]] = defaultdict(list)
        self.fees: dict[str, list[LedgerRecord]] = defaultdict(list)
        for entry in ledger:
            target = {LedgerKind.DEPOSIT_CREDIT: self.credits,
                      LedgerKind.WITHDRAWAL_CLEAR: self.clears,
                      LedgerKind.FEE: self.fees}[entry.kind]
            target[entry.reference].append(entry)

    def deposit_keys(self) -> set[str]:
        return set(self.deposits) | set(self.payments)

    def withdrawal_ids(self) -> set[str]:
        return set(self.withdrawals) | set(self.legs) | set(self.leg_keys)

    def gateway_legs_of(self, wid: str) -> list[str]:
        return self.leg_keys.get(wid, [])


def _deposit(out: Outcome, idx: _Index, key: str, deposit: OurRecord | None,
             attempts: list[GatewayRecord], fresh: int, stale: int, book_fees: bool) -> None:
    out.items += 1
    paid = [p for p in attempts if p.effective]
    credits = idx.credits.get(key, [])
    credited = sum(c.amount for c in credits)
    latest = max([p.created for p in attempts]
                 + ([deposit.updated or deposit.created] if deposit else []))
    recent = latest >= fresh
    charged = sum(p.amount for p in paid)
    currency = (deposit.currency if deposit else attempts[0].currency)
    out.total_amount += charged or (deposit.amount if deposit else 0)
    evidence = {"gateway": [p.evidence() for p in attempts],
                "ours": [deposit.evidence()] if deposit else [],
                "ledger": [c.evidence() for c in credits]}

    def broke(cls: BreakClass, detail: str, delta: int, repair: Repair | None = None,
              amount: int | None = None) -> None:
        _add(out, Break(cls, key, currency, charged if amount is None else amount, **evidence,
                        detail=detail, delta=delta, repair=repair))

    if len(paid) > 1:
        broke(BreakClass.DUPLICATE_EFFECT, f"{len(paid)} payments succeeded for one deposit",
              charged - credited)
        return
    succeeded = deposit is not None and deposit.status == "succeeded"
    if paid and (not succeeded or not credits):
        payment = paid[0]
        if recent:
            out.pending.append(key)
        elif deposit is None:
            broke(BreakClass.CHARGED_NOT_CREDITED, "charged at the gateway, no deposit of ours",
                  payment.amount - credited)
        elif (payment.amount, payment.currency) != (deposit.amount, deposit.currency):
            broke(BreakClass.AMOUNT_MISMATCH, f"charged {payment.amount} {payment.currency}, "
                  f"deposit of {deposit.amount} {deposit.currency}", payment.amount - credited)
        else:
            safe = not credits and not succeeded
            broke(BreakClass.CHARGED_NOT_CREDITED,
                  f"charged at the gateway, deposit {deposit.status}"
                  + ("" if credits else ", no ledger credit"), payment.amount - credited,
                  Repair.CREDIT_DEPOSIT if safe else None)
        return
    if not paid and (succeeded or credits):
        broke(BreakClass.CREDITED_NOT_CHARGED,
              "credited here, no succeeded payment at the gateway", -credited,
              amount=credited or (deposit.amount if deposit else 0))
        return
    if not paid:
        if deposit is None or deposit.status not in DEPOSIT_OPEN:
            out.matched += 1      # failed here (or not ours at all), nothing moved there
        elif recent:
            out.pending.append(key)
        elif not attempts and deposit.status == "pending":
            broke(BreakClass.ORPHANED_PENDING_DEPOSIT,
                  "pending, never reached the gateway (its workflow never ran)", 0,
                  Repair.RESTART_DEPOSIT, amount=deposit.amount)
        elif deposit.created < stale:
            broke(BreakClass.UNCLASSIFIED, f"deposit {deposit.status} past the hold limit, "
                  f"gateway says {[p.status for p in attempts]}", 0, amount=deposit.amount)
        else:
            out.pending.append(key)
        return
    payment = paid[0]
    assert deposit is not None
    if not (payment.amount == deposit.amount == credited
            and payment.currency == deposit.currency):
        broke(BreakClass.AMOUNT_MISMATCH, f"charged {payment.amount}, deposit {deposit.amount}, "
              f"credited {credited}", payment.amount - credited)
        return
    before = len(out.breaks)
    for dispute in idx.disputes.get(payment.id, []):
        _add(out, Break(BreakClass.DISPUTE, key, currency, dispute.amount,
                        gateway=[payment.evidence(), dispute.evidence()],
                        ours=evidence["ours"], ledger=evidence["ledger"],
                        detail=f"disputed at the gateway ({dispute.status})",
                        delta=-(dispute.amount + dispute.fee)))
    foreign = [r for r in idx.refunds_by_intent.get(payment.id, []) if r.effective]
    if foreign:
        refunded = sum(r.amount for r in foreign)
        _add(out, Break(BreakClass.STATUS_MISMATCH, key, currency, refunded,
                        gateway=[payment.evidence()] + [r.evidence() for r in foreign],
                        ours=evidence["ours"], ledger=evidence["ledger"],
                        detail=f"refunded {refunded} at the gateway, still credited here",
                        delta=-refunded))
    fees = idx.fees.get(payment.charge or "", [])
    booked = sum(f.amount for f in fees)
    if not fees and payment.fee > 0 and book_fees:
        out.fees_due.append(Break(BreakClass.FEE_MISMATCH, key, currency, payment.fee,
                                  gateway=[payment.evidence()], ours=evidence["ours"],
                                  detail=f"gateway fee {payment.fee}, none booked",
                                  delta=-payment.fee, repair=Repair.BOOK_FEE))
    elif booked != payment.fee:
        _add(out, Break(BreakClass.FEE_MISMATCH, key, currency, abs(payment.fee - booked),
                        gateway=[payment.evidence()], ours=evidence["ours"],
                        ledger=[f.evidence() for f in fees],
                        detail=f"gateway fee {payment.fee}, ledger fee {booked}",
                        delta=-(payment.fee - booked),
                        repair=Repair.BOOK_FEE if not fees else None))
    if len(out.breaks) == before:
        out.matched += 1
        out.matched_amount += payment.amount


def _withdrawal(out: Outcome, idx: _Index, wid: str, withdrawal: OurRecord | None,
                legs: list[OurRecord], fresh: int, stale: int) -> None:
    out.items += 1
    before = len(out.breaks)
    pending = False
    clears = idx.clears.get(wid, [])
    cleared = sum(c.amount for c in clears)
    currency = withdrawal.currency if withdrawal else (legs[0].currency if legs else "")
    gateway_moved = 0
    known = {leg.key for leg in legs}
    keys = sorted(known | set(idx.gateway_legs_of(wid)))
    for key in keys:
        leg = next((o for o in legs if o.key == key), None)
        sent = idx.gateway_legs.get(key, [])
        if leg is not None and leg.gateway_ref and leg.gateway_ref in idx.by_id and all(
                g.id != leg.gateway_ref for g in sent):
            sent = sent + [idx.by_id[leg.gateway_ref]]
        moved = [g for g in sent if g.effective]
        gateway_moved += sum(g.amount for g in moved)
        currency = currency or (moved[0].currency if moved else "")
        latest = max([g.created for g in sent] + ([leg.updated or leg.created] if leg else []))
        evidence = {"gateway": [g.evidence() for g in sent],
                    "ours": ([withdrawal.evidence()] if withdrawal else [])
                    + ([leg.evidence()] if leg else []),
                    "ledger": [c.evidence() for c in clears]}
        amount = leg.amount if leg else sum(g.amount for g in moved)
        out.total_amount += amount

        def broke(cls: BreakClass, detail: str, delta: int, key: str = key,
                  evidence: dict = evidence, amount: int = amount,
                  currency: str = currency) -> None:
            _add(out, Break(cls, key, currency, amount, **evidence, detail=detail, delta=delta))

        if len(moved) > 1:
            extra = sum(g.amount for g in moved) - (leg.amount if leg else 0)
            broke(BreakClass.DUPLICATE_EFFECT, f"{len(moved)} gateway effects for one leg "
                  f"({', '.join(g.id for g in moved)})", -extra)
        elif leg is None:
            broke(BreakClass.UNCLASSIFIED, "a gateway leg no withdrawal of ours planned",
                  -amount)
        elif leg.status == LEG_CONFIRMED and not moved:
            if latest >= fresh:
                pending = True
            elif sent:
                broke(BreakClass.STATUS_MISMATCH, f"confirmed here, {sent[0].status} at the "
                      "gateway", leg.amount)
            else:
                broke(BreakClass.PAYOUT_MISSING, "confirmed here, nothing at the gateway",
                      leg.amount)
        elif moved and leg.status in LEG_NOT_SENT:
            if latest >= fresh:
                pending = True
            else:
                broke(BreakClass.STATUS_MISMATCH, f"{leg.status} here, {moved[0].status} at the "
                      "gateway", -moved[0].amount)
        elif moved and (moved[0].amount, moved[0].currency) != (leg.amount, leg.currency):
            broke(BreakClass.AMOUNT_MISMATCH, f"leg of {leg.amount}, gateway moved "
                  f"{moved[0].amount}", leg.amount - moved[0].amount)
        elif leg.status not in (LEG_CONFIRMED, *LEG_NOT_SENT):
            pending = True    # being sent
    if withdrawal is not None and withdrawal.status not in WITHDRAWAL_FINAL:
        if withdrawal.created < stale:
            _add(out, Break(BreakClass.HOLD_OPEN_TOO_LONG, wid, currency, withdrawal.amount,
                            ours=[withdrawal.evidence()] + [leg.evidence() for leg in legs],
                            gateway=[g.evidence() for k in keys
                                     for g in idx.gateway_legs.get(k, [])],
                            ledger=[c.evidence() for c in clears],
                            detail=f"{withdrawal.status} since {withdrawal.created}: the hold "
                                   "is open past the limit"))
        else:
            pending = True
    elif len(out.breaks) == before and not pending and cleared != gateway_moved:
        _add(out, Break(BreakClass.AMOUNT_MISMATCH, wid, currency, abs(cleared - gateway_moved),
                        ours=[withdrawal.evidence()] if withdrawal else [],
                        gateway=[g.evidence() for k in keys for g in idx.gateway_legs.get(k, [])],
                        ledger=[c.evidence() for c in clears],
                        detail=f"gateway paid {gateway_moved}, ledger cleared {cleared}",
                        delta=cleared - gateway_moved))
    if len(out.breaks) > before:
        return
    if pending:
        out.pending.append(wid)
    else:
        out.matched += 1
        out.matched_amount += gateway_moved


def _add(out: Outcome, item: Break) -> None:
    out.breaks.append(item)


def _gateway_effect(record: GatewayRecord) -> int:
    if not record.effective:
        return 0
    if record.kind is GatewayKind.PAYMENT:
        return record.amount - record.fee
    if record.kind is GatewayKind.DISPUTE:
        return -(record.amount + record.fee)
    return -record.amount
