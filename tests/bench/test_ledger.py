"""bench/ledger.py: its raw-SQL ceiling never fails (no deadlock, whatever order concurrent
postings take their rows in) and writes a valid ledger; a failing side voids the figure."""

from __future__ import annotations

import random
import threading
import uuid

import psycopg

from bench.ledger import raw_batch_posting, raw_single_posting, run_clients, run_processes, seed
from ledger.check import run as check

PLAYERS = 4          # few players: every posting crosses others' rows, in both directions
THREADS = 8
POSTINGS = 60        # per thread


def test_the_ceiling_never_deadlocks_and_writes_a_valid_ledger(fresh_engine):
    players = [f"ceiling-{n}" for n in range(PLAYERS)]
    with fresh_engine.begin() as conn:
        ids = seed(conn, players)
    cash = [ids[f"player:{p}/player_cash"] for p in players]
    house = ids["house/house_revenue"]
    url = fresh_engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    errors: list[BaseException] = []

    def singles(n: int) -> None:
        rng = random.Random(n)
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(POSTINGS):
                a, b = rng.sample(cash, 2)   # a -> b and b -> a run at once
                debit = (house, rng.randrange(2)) if i % 3 == 0 else (a, 0)
                raw_single_posting(conn, f"s-{n}-{i}-{uuid.uuid4().hex[:6]}", "transfer",
                                   debit, b)

    def batches(n: int) -> None:
        rng = random.Random(100 + n)
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(POSTINGS // 6):
                credits = [rng.choice(cash) for _ in range(50)]
                raw_batch_posting(conn, [f"b-{n}-{i}-{k}" for k in range(50)], credits,
                                  house, rng.randrange(2))

    def guarded(work, n: int) -> None:
        try:
            work(n)
        except BaseException as error:  # asserted below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(singles, n)) for n in range(THREADS)]
    threads += [threading.Thread(target=guarded, args=(batches, n)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with fresh_engine.begin() as conn:
        written = conn.exec_driver_sql(
            "SELECT count(*) FROM ledger_transactions WHERE kind IN ('transfer', 'settlement')"
        ).scalar()
        assert written == THREADS * POSTINGS + 2 * (POSTINGS // 6) * 50
        assert check(conn) == []


def test_a_failing_client_is_reported_not_dropped():
    def body(n: int, rng: random.Random) -> int:
        if n == 1:
            raise RuntimeError("deadlock detected")
        return 1

    rate, errors = run_clients(2, 0.2, body)
    assert rate > 0 and errors == ["RuntimeError: deadlock detected"]


def test_a_failing_client_process_is_reported_too():
    def body(n: int, rng: random.Random) -> int:
        raise RuntimeError("lost connection")

    rate, errors = run_processes(2, 1, 0.2, body)
    assert rate == 0 and errors == ["RuntimeError: lost connection"] * 2
