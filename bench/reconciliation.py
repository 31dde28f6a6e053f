"""Reconciliation accuracy and throughput on a seeded corpus.

    .venv/bin/python bench/reconciliation.py [--rows 100000] [--fault-rate 0.01] [--seed 11]
    .venv/bin/python bench/reconciliation.py --rows 1000000      # the throughput target

A seeded corpus of gateway transactions (deposits' payments with their fees, refund and payout
legs of withdrawals, disputes) with our records and ledger postings beside them, ~1 % of the
business operations carrying one injected fault of every break class. It runs the matching and
classification (reconciliation.engine, the code a run uses; the gateway's pages and the
database reads are not in the timing: they are I/O, measured by the end-to-end tests) and
prints:
  - match rate by count and by amount of the clean items (target >= 99.8 % matched
    automatically), false matches (an injected fault matched as clean: target 0);
  - the injected-class x found-class table (target: every fault found in its class);
  - throughput in gateway rows per second (target: 1,000,000 rows in <= 60 s on 2 cores).
Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reconciliation.engine import reconcile
from reconciliation.model import (
    BreakClass,
    GatewayKind,
    GatewayRecord,
    LedgerKind,
    LedgerRecord,
    OurKind,
    OurRecord,
    Window,
)

T0 = 1_767_225_600                       # 2026-01-01T00:00:00Z
DAY = 86_400
WINDOW = Window(T0, T0 + DAY)
AS_OF = T0 + 2 * DAY
CURRENCIES = ("USD", "EUR", "GBP")
CLEAN = "clean"


def fee_for(amount: int) -> int:
    return (amount * 29 + 500) // 1000 + 30


class Corpus:
    def __init__(self) -> None:
        self.gateway: list[GatewayRecord] = []
        self.ours: list[OurRecord] = []
        self.ledger: list[LedgerRecord] = []
        self.expected: dict[str, str] = {}      # business key -> injected class or "clean"
        self.amounts: dict[str, int] = {}
        self._txn = 0

    def txn(self) -> int:
        self._txn += 1
        return self._txn

    # --- deposits -------------------------------------------------------------------------
    def deposit(self, n: int, rng: random.Random, fault: str) -> None:
        key = f"dep_{n:08d}"
        amount = rng.randrange(500, 500_000)
        currency = rng.choice(CURRENCIES)
        at = WINDOW.start + rng.randrange(DAY - 3_600)
        fee = fee_for(amount)
        pi, ch = f"pi_{n:08d}", f"ch_{n:08d}"
        self.expected[key] = fault
        self.amounts[key] = amount
        if fault == BreakClass.ORPHANED_PENDING_DEPOSIT:
            self.ours.append(OurRecord(OurKind.DEPOSIT, key, "pending", amount, currency, at))
            return
        pay_status = "requires_payment_method" if fault == BreakClass.CREDITED_NOT_CHARGED \
            else "succeeded"
        charged = amount + 100 if fault == BreakClass.AMOUNT_MISMATCH else amount
        self.gateway.append(GatewayRecord(
            GatewayKind.PAYMENT, pi, pay_status, charged, currency, at + 2, key,
            payment_intent=pi, charge=ch, fee=fee if pay_status == "succeeded" else 0,
            balance_transaction=f"txn_{n:08d}"))
        status = "failed" if fault == BreakClass.CHARGED_NOT_CREDITED else "succeeded"
        self.ours.append(OurRecord(OurKind.DEPOSIT, key, status, amount, currency, at,
                                   gateway_ref=pi, updated=at + 3))
        if status == "succeeded":
            self.ledger.append(LedgerRecord(LedgerKind.DEPOSIT_CREDIT, key, amount, currency,
                                            self.txn()))
            booked = fee + 7 if fault == BreakClass.FEE_MISMATCH else fee
            if pay_status == "succeeded":
                self.ledger.append(LedgerRecord(LedgerKind.FEE, ch, booked, currency,
                                                self.txn()))
        if fault == BreakClass.DISPUTE:
            self.gateway.append(GatewayRecord(GatewayKind.DISPUTE, f"dp_{n:08d}",
                                              "needs_response", amount, currency, at + 600,
                                              None, payment_intent=pi, charge=ch, fee=1_500))
        if fault == BreakClass.STATUS_MISMATCH:
            self.gateway.append(GatewayRecord(GatewayKind.REFUND, f"re_x{n:08d}", "succeeded",
                                              amount, currency, at + 900, None,
                                              payment_intent=pi, charge=ch))

    # --- withdrawals ----------------------------------------------------------------------
    def withdrawal(self, n: int, rng: random.Random, fault: str, method: str) -> None:
        wid = f"wd_{n:08d}"
        amount = rng.randrange(1_000, 200_000)
        currency = rng.choice(CURRENCIES)
        at = WINDOW.start + rng.randrange(DAY - 3_600)
        key = f"{wid}:1"
        business = wid if fault == BreakClass.HOLD_OPEN_TOO_LONG else key
        self.expected[business] = fault
        self.amounts[business] = amount
        kind = GatewayKind.REFUND if method == "refund" else GatewayKind.PAYOUT
        prefix = "re" if method == "refund" else "po"
        state = "paying" if fault == BreakClass.HOLD_OPEN_TOO_LONG else "paid"
        self.ours.append(OurRecord(OurKind.WITHDRAWAL, wid, state, amount, currency, at,
                                   updated=at + 5))
        if fault == BreakClass.HOLD_OPEN_TOO_LONG:
            self.ours.append(OurRecord(OurKind(method), key, "planned", amount, currency, at,
                                       parent=wid, parent_status=state))
            return
        ref = f"{prefix}_{n:08d}"
        self.ours.append(OurRecord(OurKind(method), key, "confirmed", amount, currency, at + 1,
                                   gateway_ref=ref, parent=wid, parent_status=state))
        self.ledger.append(LedgerRecord(LedgerKind.WITHDRAWAL_CLEAR, wid, amount, currency,
                                        self.txn()))
        if fault == BreakClass.PAYOUT_MISSING:
            return
        status = "succeeded" if method == "refund" else "paid"
        self.gateway.append(GatewayRecord(kind, ref, status, amount, currency, at + 2, key,
                                          payment_intent=f"pi_w{n:08d}"))
        if fault == BreakClass.DUPLICATE_EFFECT:
            self.gateway.append(GatewayRecord(kind, f"{ref}_again", status, amount, currency,
                                              at + 40, key, payment_intent=f"pi_w{n:08d}"))

    def stray(self, n: int, rng: random.Random) -> None:
        pid = f"po_stray_{n:08d}"
        amount = rng.randrange(100, 10_000)
        self.expected[pid] = BreakClass.UNCLASSIFIED
        self.amounts[pid] = amount
        self.gateway.append(GatewayRecord(GatewayKind.PAYOUT, pid, "paid", amount, "USD",
                                          WINDOW.start + rng.randrange(DAY), None))


DEPOSIT_FAULTS = (BreakClass.CHARGED_NOT_CREDITED, BreakClass.CREDITED_NOT_CHARGED,
                  BreakClass.AMOUNT_MISMATCH, BreakClass.STATUS_MISMATCH,
                  BreakClass.ORPHANED_PENDING_DEPOSIT, BreakClass.FEE_MISMATCH,
                  BreakClass.DISPUTE)
WITHDRAWAL_FAULTS = (BreakClass.DUPLICATE_EFFECT, BreakClass.PAYOUT_MISSING,
                     BreakClass.HOLD_OPEN_TOO_LONG)
ALL_FAULTS = DEPOSIT_FAULTS + WITHDRAWAL_FAULTS + (BreakClass.UNCLASSIFIED,)


def build(rows: int, fault_rate: float, seed: int) -> Corpus:
    """About `rows` gateway records: ~70 % deposits, ~20 % refund legs, ~10 % payout legs."""
    rng = random.Random(seed)
    corpus = Corpus()
    n = 0
    while len(corpus.gateway) < rows:
        n += 1
        faulty = rng.random() < fault_rate
        roll = rng.random()
        if faulty and rng.random() < 1 / len(ALL_FAULTS):
            corpus.stray(n, rng)
        elif roll < 0.7:
            corpus.deposit(n, rng, rng.choice(DEPOSIT_FAULTS) if faulty else CLEAN)
        else:
            method = "refund" if roll < 0.9 else "payout"
            corpus.withdrawal(n, rng, rng.choice(WITHDRAWAL_FAULTS) if faulty else CLEAN,
                              method)
    return corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    started = time.perf_counter()
    corpus = build(args.rows, args.fault_rate, args.seed)
    built = time.perf_counter() - started
    started = time.perf_counter()
    outcome = reconcile(corpus.gateway, corpus.ours, corpus.ledger, window=WINDOW, as_of=AS_OF,
                        grace_seconds=900, hold_max_seconds=DAY)
    elapsed = time.perf_counter() - started

    found: dict[str, list[str]] = defaultdict(list)
    for item in outcome.breaks:
        found[item.key].append(str(item.cls))
    table: Counter[tuple[str, str]] = Counter()
    clean_total = clean_matched = clean_amount = clean_matched_amount = false_matches = 0
    for key, injected in corpus.expected.items():
        classes = found.get(key, [])
        got = classes[0] if len(classes) == 1 else ("+".join(sorted(classes)) or "matched")
        table[(str(injected), got)] += 1
        if injected == CLEAN:
            clean_total += 1
            clean_amount += corpus.amounts[key]
            if not classes and key not in outcome.pending:
                clean_matched += 1
                clean_matched_amount += corpus.amounts[key]
        elif not classes:
            false_matches += 1
    misclassified = sum(n for (injected, got), n in table.items()
                        if injected != CLEAN and got != injected)
    stray_keys = [k for k in found if k not in corpus.expected]

    rate_count = clean_matched / clean_total if clean_total else 1.0
    rate_amount = clean_matched_amount / clean_amount if clean_amount else 1.0
    rows = len(corpus.gateway)
    print(f"corpus: {rows:,} gateway rows, {len(corpus.ours):,} records of ours, "
          f"{len(corpus.ledger):,} ledger postings, {len(corpus.expected):,} business "
          f"operations ({sum(1 for v in corpus.expected.values() if v != CLEAN):,} with an "
          f"injected fault), built in {built:.1f} s (seed {args.seed})")
    print(f"clean items matched automatically: {clean_matched:,}/{clean_total:,} = "
          f"{rate_count:.4%} by count, {rate_amount:.4%} by amount (target >= 99.8 %)")
    print(f"false matches (a fault matched as clean): {false_matches} (target 0); "
          f"faults in another class: {misclassified}; breaks on keys never injected: "
          f"{len(stray_keys)}")
    print(f"verdict {outcome.verdict()}, residual {outcome.residual()}")
    classes = [str(c) for c in ALL_FAULTS]
    columns = sorted({got for _, got in table}, key=lambda c: (c not in classes, c))
    width = max(len(c) for c in columns + classes + [CLEAN]) + 1
    print("\ninjected \\ found".ljust(width + 1) + "".join(c[:14].rjust(15) for c in columns))
    for injected in [CLEAN] + classes:
        print(injected.ljust(width) + "".join(str(table.get((injected, got), "")).rjust(15)
                                              for got in columns))
    per_second = rows / elapsed if elapsed else float("inf")
    print(f"\nthroughput: {rows:,} gateway rows reconciled in {elapsed:.2f} s = "
          f"{per_second:,.0f} rows/s; 1,000,000 rows would take {1_000_000 / per_second:.1f} s "
          "(target <= 60 s on 2 cores; matching and classification only, the reads are I/O)")
    ok = (rate_count >= 0.998 and false_matches == 0 and misclassified == 0
          and not stray_keys and 1_000_000 / per_second <= 60)
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
