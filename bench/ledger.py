"""Ledger throughput: postings/s through the ledger API beside the raw-SQL ceiling.

    .venv/bin/python bench/ledger.py [--seconds 5] [--clients 16]

Clients are processes (as API and worker processes are), each with its own connection pool;
threads inside one Python process would measure the GIL, not the ledger.

(a) single transfers between players, (b) single transfers that all touch the house account (each
call its own database transaction, and again through the GroupPoster, which commits the
transfers that arrive together in one database transaction),
(c) batched postings (ledger.post_many); each beside the same rows written by bare SQL on the
same schema in the same run: the same transactions, entries with their running balances and
balance rows (a valid ledger: `ledger check` is run on it too), but no idempotency check, no
funds check, no validation, no locking order, one statement. The ratio says what the ledger's
guarantees cost. Targets on 2 cores:
(b) >= 2,000 transfers/s; (c) >= 0.5 x its ceiling. Runs on a temporary database it drops.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import threading
import time
import uuid

# Run as a script: the repository root goes on sys.path before the project's imports.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg

import ledger
from ledger import AccountRef, Leg, Transfer
from ledger.check import run as check
from ledger.group_commit import GroupPoster
from settlepay.db import make_engine
from tests.support.databases import sqlalchemy_url, temporary_database

PLAYERS = 2_000
BATCH = 1_000

RAW_SINGLE = """
WITH t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result)
           VALUES (%(key)s, '\\x00', 'raw', 'ok') RETURNING id),
     a AS (UPDATE ledger_balances SET posted = posted - %(amount)s
            WHERE account_id = %(debit)s AND shard = %(debit_shard)s RETURNING posted),
     b AS (UPDATE ledger_balances SET posted = posted + %(amount)s
            WHERE account_id = %(credit)s AND shard = 0 RETURNING posted)
INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
SELECT t.id, %(debit)s, %(debit_shard)s, 'USD', -%(amount)s, a.posted FROM t, a
UNION ALL SELECT t.id, %(credit)s, 0, 'USD', %(amount)s, b.posted FROM t, b
"""

RAW_BATCH = """
WITH items AS (SELECT * FROM unnest(%(keys)s::text[], %(credits)s::bigint[], %(amounts)s::bigint[])
                              WITH ORDINALITY AS u(key, credit, amount, n)),
     t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result)
           SELECT key, '\\x00', 'raw', 'ok' FROM items ORDER BY n RETURNING id, idempotency_key),
     legs AS (SELECT t.id AS tx, i.n, 1 AS leg, %(house)s::bigint AS account,
                     %(house_shard)s::smallint AS shard, -i.amount AS amount
                FROM t JOIN items i ON i.key = t.idempotency_key
              UNION ALL
              SELECT t.id, i.n, 2, i.credit, 0::smallint, i.amount
                FROM t JOIN items i ON i.key = t.idempotency_key),
     moved AS (UPDATE ledger_balances b SET posted = b.posted + s.total
                 FROM (SELECT account, shard, sum(amount) AS total FROM legs GROUP BY 1, 2) s
                WHERE b.account_id = s.account AND b.shard = s.shard
               RETURNING b.account_id, b.shard, b.posted - s.total AS before)
INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
SELECT l.tx, l.account, l.shard, 'USD', l.amount,
       m.before + sum(l.amount) OVER (PARTITION BY l.account, l.shard ORDER BY l.n, l.leg)
  FROM legs l JOIN moved m ON m.account_id = l.account AND m.shard = l.shard
 ORDER BY l.account, l.shard, l.n, l.leg
"""


def run_clients(clients: int, seconds: float, body) -> float:
    """Run `body(client_no, rng)` in a loop on `clients` threads; return operations per second."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def loop(n: int) -> None:
        rng = random.Random(f"{os.getpid()}-{n}")
        while time.monotonic() < stop:
            counts[n] += body(n, rng)

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def run_processes(processes: int, threads: int, seconds: float, body) -> float:
    """`processes` forked client processes, each running `threads` client threads."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def child() -> None:
        results.put(run_clients(threads, seconds, body))

    procs = [ctx.Process(target=child) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


class PerProcess:
    """Connections and pools made in the client process that uses them (never across a fork)."""

    def __init__(self, url: str, raw_url: str) -> None:
        self.url, self.raw_url = url, raw_url
        self._pid: int | None = None
        self._lock = threading.Lock()  # a fork copies it unlocked: no thread holds it then

    def _fresh(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._engine = make_engine(sqlalchemy_url(self.url), pool_size=4)
                self._poster = None
                self._local = threading.local()
                self._pid = os.getpid()

    @property
    def engine(self):
        self._fresh()
        return self._engine

    @property
    def poster(self) -> GroupPoster:
        self._fresh()
        with self._lock:
            if self._poster is None:
                self._poster = GroupPoster(self._engine)
            return self._poster

    def raw(self):
        self._fresh()
        if not hasattr(self._local, "conn"):
            self._local.conn = psycopg.connect(self.raw_url, autocommit=True)
        return self._local.conn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()

    with (temporary_database("sp_bench_ledger") as url,
          temporary_database("sp_bench_ceiling") as raw_url):
        players = [f"b{i}" for i in range(PLAYERS)]
        for db in (url, raw_url):  # fund every player and create every account once, in both
            seed_engine = make_engine(sqlalchemy_url(db), pool_size=1)
            with seed_engine.begin() as conn:
                ledger.post_many(conn, [Transfer(f"seed-{p}", "deposit", (
                    Leg(AccountRef.gateway_clearing("stripe", "USD"), -10**9),
                    Leg(AccountRef.player_cash(p, "USD"), 10**9))) for p in players])
                ledger.post(conn, Transfer("seed-house", "seed", (
                    Leg(AccountRef.house_revenue("USD"), 1),
                    Leg(AccountRef.gateway_clearing("stripe", "USD"), -1))))
                ids = dict(conn.exec_driver_sql(
                    "SELECT owner || '/' || type, id FROM ledger_accounts").all())
            seed_engine.dispose()
        cash_id = {p: ids[f"player:{p}/player_cash"] for p in players}
        house_id = ids["house/house_revenue"]
        run = uuid.uuid4().hex[:6]
        res = PerProcess(url, raw_url)

        def key(label, n, rng):
            return f"{label}-{run}-{os.getpid()}-{n}-{rng.getrandbits(48)}"

        def between_players(n, rng):
            a, b = rng.sample(players, 2)
            ledger.post_now(res.engine, Transfer(key("a", n, rng), "transfer", (
                Leg(AccountRef.player_cash(a, "USD"), -1),
                Leg(AccountRef.player_cash(b, "USD"), 1))))
            return 1

        def with_house(n, rng):
            ledger.post_now(res.engine, Transfer(key("b", n, rng), "settlement", (
                Leg(AccountRef.house_revenue("USD"), -1),
                Leg(AccountRef.player_cash(rng.choice(players), "USD"), 1))))
            return 1

        def with_house_grouped(n, rng):
            res.poster.post(Transfer(key("g", n, rng), "settlement", (
                Leg(AccountRef.house_revenue("USD"), -1),
                Leg(AccountRef.player_cash(rng.choice(players), "USD"), 1))))
            return 1

        def batched(n, rng):
            with res.engine.begin() as conn:
                ledger.post_many(conn, [Transfer(key("c", n, rng), "settlement", (
                    Leg(AccountRef.house_revenue("USD"), -1),
                    Leg(AccountRef.player_cash(rng.choice(players), "USD"), 1)))
                    for _ in range(BATCH)])
            return BATCH

        def raw_single(label, debit_of):
            def body(n, rng):
                a, b = rng.sample(players, 2)
                debit, shard = debit_of(a, rng)
                # autocommit: one statement is the transaction, one round trip, like ledger.post_now
                res.raw().execute(RAW_SINGLE, {"key": key("r" + label, n, rng), "amount": 1,
                                               "debit": debit, "debit_shard": shard,
                                               "credit": cash_id[b]})
                return 1
            return body

        def raw_batched(n, rng):
            with res.raw().transaction():
                res.raw().execute(RAW_BATCH, {
                    "keys": [key("rc", n, rng) for _ in range(BATCH)],
                    "credits": [cash_id[rng.choice(players)] for _ in range(BATCH)],
                    "amounts": [1] * BATCH, "house": house_id, "house_shard": os.getpid() % 16})
            return BATCH

        c = args.clients
        print(f"ledger benchmark: {c} client processes, {args.seconds:.0f} s per figure, "
              f"{os.cpu_count()} cores, PostgreSQL at {url.rsplit('@', 1)[-1]}")
        rows = [  # label, (processes, threads), ours, ceiling, target
            ("(a) single transfers between players", (c, 1), between_players,
             raw_single("a", lambda a, rng: (cash_id[a], 0)), None),
            ("(b) single transfers touching the house", (c, 1), with_house,
             raw_single("b", lambda a, rng: (house_id, rng.randrange(16))), 2_000),
            # One process whose 16 request threads share one GroupPoster (an API or worker
            # process); the ceiling beside it runs the same 16 threads of bare SQL.
            ("(b) the same through GroupPoster", (1, c), with_house_grouped,
             raw_single("g", lambda a, rng: (house_id, rng.randrange(16))), 2_000),
            (f"(c) batched postings ({BATCH}/batch)", (2, 1), batched, raw_batched, None),
        ]
        for label, (procs, threads), body, raw_body, target in rows:
            ours = run_processes(procs, threads, args.seconds, body)
            ceiling = run_processes(procs, threads, args.seconds, raw_body)
            note = ""
            if target:
                note = f"  target >= {target:,}/s: {'met' if ours >= target else 'NOT met'}"
            if label.startswith("(c)"):
                note = f"  target >= 0.5 x ceiling: {'met' if ours >= 0.5 * ceiling else 'NOT met'}"
            print(f"{label:<42} {ours:>8,.0f} postings/s   raw SQL ceiling {ceiling:>8,.0f}/s   "
                  f"ratio {ours / ceiling:.2f}{note}", flush=True)
        for name, db in (("ledger", url), ("raw SQL ceiling", raw_url)):
            check_engine = make_engine(sqlalchemy_url(db), pool_size=1)
            with check_engine.begin() as conn:
                violations = check(conn)
            check_engine.dispose()
            print(f"ledger check on the {name} database:",
                  "all invariants hold" if not violations else violations[:3])


if __name__ == "__main__":
    main()
