"""Many concurrent transfers, duplicate retries included, on a real PostgreSQL: the invariants
hold at the end and no key has more than one effect."""

from __future__ import annotations

import random
import threading
from collections import Counter

from sqlalchemy import text

import ledger
from ledger import AccountRef, Leg, Transfer
from ledger.check import run as check
from settlepay.db import run_in_transaction

THREADS = 16
TRANSFERS_PER_THREAD = 60


def test_concurrent_transfers_with_duplicate_retries(fresh_engine):
    rng = random.Random(7)
    players = [f"c{i}" for i in range(6)]
    with fresh_engine.begin() as conn:
        for p in players:
            ledger.post(conn, Transfer(f"seed-{p}", "deposit", (
                Leg(AccountRef.gateway_clearing("stripe", "USD"), -10_000),
                Leg(AccountRef.player_cash(p, "USD"), 10_000))))

    # A shared plan: each transfer is submitted by two different threads (a client retry).
    plan = []
    for n in range(THREADS * TRANSFERS_PER_THREAD // 2):
        a, b = rng.sample(players, 2)
        kind = rng.choice(["p2p", "bet", "win", "hold"])
        plan.append((f"tx-{n}", kind, a, b, rng.randint(1, 3_000)))
    work = [[] for _ in range(THREADS)]
    for i, item in enumerate(plan):
        work[i % THREADS].append(item)
        work[(i + 1 + i % (THREADS - 1)) % THREADS].append(item)

    outcomes: dict[str, list] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def submit(item):
        key, kind, a, b, amount = item
        cash_a, cash_b = AccountRef.player_cash(a, "USD"), AccountRef.player_cash(b, "USD")
        house = AccountRef.house_revenue("USD")
        if kind == "p2p":
            t = Transfer(key, "transfer", (Leg(cash_a, -amount), Leg(cash_b, amount)))
        elif kind == "bet":
            t = Transfer(key, "bet_stake", (Leg(cash_a, -amount), Leg(house, amount)))
        elif kind == "win":
            t = Transfer(key, "settlement", (Leg(house, -amount), Leg(cash_a, amount)))
        else:
            return run_in_transaction(fresh_engine, lambda c: ledger.hold(
                c, key, cash_a, AccountRef.pending_withdrawal(a, "USD"), amount))
        return run_in_transaction(fresh_engine, lambda c: ledger.post(c, t))

    def worker(items):
        try:
            for item in items:
                result = submit(item)
                with lock:
                    outcomes.setdefault(item[0], []).append(result)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    # Both submissions of a key got the same answer, one of them as a replay.
    for results in outcomes.values():
        assert len(results) == 2
        assert results[0].transaction_id == results[1].transaction_id
        assert results[0].code == results[1].code
        assert sorted(r.replayed for r in results) == [False, True]

    with fresh_engine.begin() as conn:
        keys = conn.execute(text("SELECT idempotency_key FROM ledger_transactions"))
        per_key = Counter(k for (k,) in keys)
        assert max(per_key.values()) == 1
        assert len(per_key) == len(plan) + len(players)
        assert check(conn) == []
        total_cash = sum(ledger.balance(conn, AccountRef.player_cash(p, "USD")).posted
                         for p in players)
        house = ledger.balance(conn, AccountRef.house_revenue("USD")).posted
        # Money is conserved: what the players lost the house won, and nothing was created.
        assert total_cash + house == 60_000
