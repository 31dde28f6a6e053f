"""What three-way reconciliation reads and what it concludes, as plain values (no I/O).

Three sides, each reduced to the records reconciliation needs:
  - `GatewayRecord`: a payment (PaymentIntent + its charge's fee), refund, payout or dispute, as
    the gateway lists it, with OUR key read from the metadata we sent (`settlepay_deposit_id`,
    or `withdrawal_id` + `leg`): matching never falls back to amount and date;
  - `OurRecord`: a deposit, or one refund / payout leg of a withdrawal;
  - `LedgerRecord`: a posting that moved gateway clearing: a deposit credit, a withdrawal's
    clearing, a booked gateway fee.
Amounts are integers in minor units with an upper-case currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class GatewayKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    PAYOUT = "payout"
    DISPUTE = "dispute"


class OurKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"  # the withdrawal itself (its state and age: a hold open too long)
    REFUND = "refund"          # a withdrawal's refund leg
    PAYOUT = "payout"          # a withdrawal's payout leg


class LedgerKind(StrEnum):
    DEPOSIT_CREDIT = "deposit_credit"      # clearing -> player cash
    WITHDRAWAL_CLEAR = "withdrawal_clear"  # pending withdrawal -> clearing
    FEE = "fee"                            # the gateway's fee: house revenue -> clearing


class BreakClass(StrEnum):
    CHARGED_NOT_CREDITED = "charged_not_credited"
    CREDITED_NOT_CHARGED = "credited_not_charged"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"            # e.g. refunded at the gateway, credited here
    DUPLICATE_EFFECT = "duplicate_effect"          # one business operation, two gateway effects
    PAYOUT_MISSING = "payout_missing"              # our leg confirmed, nothing at the gateway
    HOLD_OPEN_TOO_LONG = "hold_open_too_long"      # a stuck withdrawal
    ORPHANED_PENDING_DEPOSIT = "orphaned_pending_deposit"
    FEE_MISMATCH = "fee_mismatch"
    DISPUTE = "dispute"
    UNCLASSIFIED = "unclassified"


class Repair(StrEnum):
    """The safe repairs, each through the normal path and its own ledger key."""

    CREDIT_DEPOSIT = "credit_deposit"              # commands.deposits.credit(after_close)
    RESTART_DEPOSIT = "restart_deposit_workflow"   # the deposit's own workflow id, never twice
    BOOK_FEE = "book_fee"                          # ledger key recon:fee:<balance txn>


class Verdict(StrEnum):
    RECONCILED = "reconciled"
    RECONCILED_WITH_PENDING = "reconciled_with_pending"
    BREAKS = "breaks"
    INCOMPLETE = "incomplete"


class BreakStatus(StrEnum):
    OPEN = "open"
    REPAIRED = "repaired"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class GatewayRecord:
    kind: GatewayKind
    id: str
    status: str
    amount: int
    currency: str
    created: int                        # unix seconds
    key: str | None                     # our key: deposit id, or "<withdrawal id>:<leg>"
    payment_intent: str | None = None
    charge: str | None = None
    fee: int = 0                        # payments: the charge's fee; disputes: the dispute fee
    balance_transaction: str | None = None   # payments: the charge's balance transaction

    @property
    def effective(self) -> bool:
        """Money moved (or is moving) at the gateway."""
        if self.kind is GatewayKind.PAYMENT:
            return self.status == "succeeded"
        return self.status not in ("failed", "canceled")

    def evidence(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "id": self.id, "status": self.status,
                "amount": self.amount, "currency": self.currency, "created": self.created,
                "key": self.key, "payment_intent": self.payment_intent, "charge": self.charge,
                "fee": self.fee, "balance_transaction": self.balance_transaction}


@dataclass(frozen=True)
class OurRecord:
    kind: OurKind
    key: str                            # deposit id, or "<withdrawal id>:<leg>"
    status: str                         # deposit status, or the leg's state
    amount: int
    currency: str
    created: int                        # unix seconds of insertion
    gateway_ref: str | None = None      # payment intent / refund / payout id we recorded
    parent: str | None = None           # a leg's withdrawal id
    parent_status: str | None = None    # a leg's withdrawal state
    updated: int | None = None
    partner_id: str | None = None

    def evidence(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "key": self.key, "status": self.status,
                "amount": self.amount, "currency": self.currency, "created": self.created,
                "gateway_ref": self.gateway_ref, "parent": self.parent,
                "parent_status": self.parent_status, "partner_id": self.partner_id}


@dataclass(frozen=True)
class LedgerRecord:
    kind: LedgerKind
    reference: str                      # deposit id, withdrawal id, or the fee's charge id
    amount: int                         # what moved through clearing, positive
    currency: str
    transaction_id: int
    key: str = ""

    def evidence(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "reference": self.reference, "amount": self.amount,
                "currency": self.currency, "transaction_id": self.transaction_id,
                "key": self.key}


@dataclass(frozen=True)
class Window:
    """[start, end) in unix seconds, on insertion time: our records by when they were
    inserted, gateway records without one of ours by when the gateway created them."""
    start: int
    end: int

    def holds(self, t: int) -> bool:
        return self.start <= t < self.end


@dataclass
class Break:
    cls: BreakClass
    key: str                            # the business key the break is about
    currency: str
    amount: int                         # the amount at stake (minor units, positive)
    gateway: list[dict[str, Any]] = field(default_factory=list)
    ours: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""
    repair: Repair | None = None
    # gateway effect - ledger effect on what the gateway owes us (signed): the residual's share
    delta: int = 0

    @property
    def evidence(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "ours": self.ours, "ledger": self.ledger,
                "detail": self.detail}

    @property
    def safe(self) -> bool:
        return self.repair is not None


@dataclass
class Outcome:
    """One run's conclusion over its window."""
    window: Window
    as_of: int
    items: int = 0                      # business keys examined
    matched: int = 0
    matched_amount: int = 0
    total_amount: int = 0
    pending: list[str] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    fees_due: list[Break] = field(default_factory=list)   # fees to book (book_fees=True)

    def residual(self, repaired: set[int] | None = None) -> dict[str, int]:
        """Per currency, what the gateway moved that the ledger does not explain (open breaks
        only: a matched item explains itself exactly). 0 everywhere when reconciled."""
        out: dict[str, int] = {}
        for i, b in enumerate(self.breaks):
            if i not in (repaired or set()):
                out[b.currency] = out.get(b.currency, 0) + b.delta
        return dict(sorted(out.items()))

    def verdict(self, repaired: set[int] | None = None) -> Verdict:
        """With `repaired` (indexes of breaks repaired), those no longer count."""
        open_breaks = [b for i, b in enumerate(self.breaks) if i not in (repaired or set())]
        if open_breaks:
            return Verdict.BREAKS
        return Verdict.RECONCILED_WITH_PENDING if self.pending else Verdict.RECONCILED

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.breaks:
            out[str(b.cls)] = out.get(str(b.cls), 0) + 1
        return dict(sorted(out.items()))
