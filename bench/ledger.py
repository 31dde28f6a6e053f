"""Ledger throughput: postings/s through the ledger API beside the raw-SQL ceiling.

    .venv/bin/python bench/ledger.py [--seconds 5] [--clients 16] [--rounds 2]

Clients are processes (as API and worker processes are), each with its own connection pool;
threads inside one Python process would measure the GIL, not the ledger.

(a) single transfers between players, (b) single transfers that all touch the house account (each
call its own database transaction, and again through the GroupPoster, which commits the
transfers that arrive together in one database transaction),
(c) batched postings (ledger.post_many); each beside the same rows written by bare SQL on the
same schema in the same run: the same transactions (kind, request hash size, metadata), entries
with their running balances and balance rows (a valid ledger: `ledger check` is run on it too),
but no idempotency check, no funds check, no validation, one statement per posting (a batch:
one locking statement, then one statement). The ceiling takes its row locks in one stable order
(account id; a batch: the players' rows, then its house row), as the ledger does, so it cannot
deadlock. The ratio says what the ledger's guarantees cost. Targets on 2 cores (issue 16):
(a) >= 0.5 x its ceiling; (b) >= 2,000 transfers/s without the GroupPoster; (c) >= 0.6 x its
ceiling. Any error on either side (a failed posting, a deadlock in the ceiling) fails the run:
it is reported and the bench exits 1 instead of printing a ratio. Runs on temporary databases
it drops, and prints the load average before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
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

# The ledger's rows carry a 32-byte request hash and '{}' metadata: so do the ceiling's.
HASH = bytes(32)

# Legs in (account id, shard) order: `first` is updated (locked) in the UNION's first branch,
# before `second`, so two postings on the same rows never wait on each other crosswise.
RAW_SINGLE = """
WITH t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, metadata)
           VALUES (%(key)s, %(hash)s, %(kind)s, 'ok', '{}') RETURNING id),
     a AS (UPDATE ledger_balances SET posted = posted + %(first_amount)s
            WHERE account_id = %(first)s AND shard = %(first_shard)s RETURNING posted),
     b AS (UPDATE ledger_balances SET posted = posted + %(second_amount)s
            WHERE account_id = %(second)s AND shard = %(second_shard)s RETURNING posted)
INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
SELECT t.id, %(first)s, %(first_shard)s, 'USD', %(first_amount)s, a.posted FROM t, a
UNION ALL SELECT t.id, %(second)s, %(second_shard)s, 'USD', %(second_amount)s, b.posted FROM t, b
"""

# A batch locks as ledger_post_many does: the single-row accounts in account id order, then its
# row of the house account; the statement after it finds every row it updates already locked.
RAW_BATCH_LOCK = """
SELECT 1 FROM ledger_balances
 WHERE (shard = 0 AND account_id = ANY(%(credits)s::bigint[]))
 ORDER BY account_id FOR UPDATE
"""
RAW_BATCH_LOCK_HOUSE = """
SELECT 1 FROM ledger_balances WHERE account_id = %(house)s AND shard = %(house_shard)s FOR UPDATE
"""

RAW_BATCH = """
WITH items AS (SELECT * FROM unnest(%(keys)s::text[], %(credits)s::bigint[], %(amounts)s::bigint[])
                              WITH ORDINALITY AS u(key, credit, amount, n)),
     t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, metadata)
           SELECT key, %(hash)s, 'settlement', 'ok', '{}' FROM items ORDER BY n
           RETURNING id, idempotency_key),
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


def seed(conn, players: list[str]) -> dict[str, int]:
    """Fund every player and create the house account, through the ledger; the account ids by
    "owner/type"."""
    ledger.post_many(conn, [Transfer(f"seed-{p}", "deposit", (
        Leg(AccountRef.gateway_clearing("stripe", "USD"), -10**9),
        Leg(AccountRef.player_cash(p, "USD"), 10**9))) for p in players])
    ledger.post(conn, Transfer("seed-house", "seed", (
        Leg(AccountRef.house_revenue("USD"), 1),
        Leg(AccountRef.gateway_clearing("stripe", "USD"), -1))))
    return dict(conn.exec_driver_sql("SELECT owner || '/' || type, id FROM ledger_accounts").all())


def raw_single_posting(conn: psycopg.Connection, key: str, kind: str, debit: tuple[int, int],
                       credit: int, amount: int = 1) -> None:
    """The ceiling of one posting: `amount` from the balance row `debit` (account id, shard) to
    `credit`'s row, one statement, its rows updated in (account id, shard) order."""
    first, second = sorted([(debit[0], debit[1], -amount), (credit, 0, amount)])
    conn.execute(RAW_SINGLE, {
        "key": key, "hash": HASH, "kind": kind,
        "first": first[0], "first_shard": first[1], "first_amount": first[2],
        "second": second[0], "second_shard": second[1], "second_amount": second[2]})


def raw_batch_posting(conn: psycopg.Connection, keys: list[str], credits: list[int], house: int,
                      house_shard: int) -> None:
    """The ceiling of one batch: 1 from the house row to each credited account, one database
    transaction; the players' rows locked in account id order, then the house row."""
    with conn.transaction():
        conn.execute(RAW_BATCH_LOCK, {"credits": sorted(set(credits))})
        conn.execute(RAW_BATCH_LOCK_HOUSE, {"house": house, "house_shard": house_shard})
        conn.execute(RAW_BATCH, {"keys": keys, "hash": HASH, "credits": credits,
                                 "amounts": [1] * len(keys), "house": house,
                                 "house_shard": house_shard})


def run_clients(clients: int, seconds: float, body) -> tuple[float, list[str]]:
    """Run `body(client_no, rng)` in a loop on `clients` threads; return operations per second
    and the errors met (a thread that fails stops, and its error is reported, never dropped)."""
    counts = [0] * clients
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def loop(n: int) -> None:
        rng = random.Random(f"{os.getpid()}-{n}")
        try:
            while time.monotonic() < stop:
                counts[n] += body(n, rng)
        except Exception as error:  # reported by the caller: the figure is void
            errors.append(f"{type(error).__name__}: {error}".splitlines()[0])

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start), errors


def run_processes(processes: int, threads: int, seconds: float, body) -> tuple[float, list[str]]:
    """`processes` forked client processes, each running `threads` client threads; the summed
    rate and every error of every process (a process that dies is an error too)."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def child() -> None:
        try:
            results.put(run_clients(threads, seconds, body))
        except BaseException as error:
            results.put((0.0, [f"client process: {type(error).__name__}: {error}"]))

    procs = [ctx.Process(target=child) for _ in range(processes)]
    for p in procs:
        p.start()
    rates, errors = [], []
    for _ in procs:
        try:
            rate, errs = results.get(timeout=seconds * 4 + 60)
        except queue.Empty:
            rate, errs = 0.0, ["a client process did not report"]
        rates.append(rate)
        errors += errs
    for p in procs:
        p.join(timeout=30)
        if p.exitcode != 0:
            errors.append(f"client process exited with {p.exitcode}")
    return sum(rates), errors


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
    parser.add_argument("--only", default="", help="run only these rows, e.g. 'c' or 'ab'")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds per side (each side runs --seconds in all)")
    args = parser.parse_args()

    with (temporary_database("sp_bench_ledger") as url,
          temporary_database("sp_bench_ceiling") as raw_url):
        players = [f"b{i}" for i in range(PLAYERS)]
        for db in (url, raw_url):  # fund every player and create every account once, in both
            seed_engine = make_engine(sqlalchemy_url(db), pool_size=1)
            with seed_engine.begin() as conn:
                ids = seed(conn, players)
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

        def raw_single(label, kind, debit_of):
            def body(n, rng):
                a, b = rng.sample(players, 2)
                # autocommit: one statement is the transaction, one round trip, like ledger.post_now
                raw_single_posting(res.raw(), key("r" + label, n, rng), kind, debit_of(a, rng),
                                   cash_id[b])
                return 1
            return body

        def raw_batched(n, rng):
            raw_batch_posting(res.raw(), [key("rc", n, rng) for _ in range(BATCH)],
                              [cash_id[rng.choice(players)] for _ in range(BATCH)],
                              house_id, os.getpid() % 16)
            return BATCH

        c = args.clients
        print(f"ledger benchmark: {c} client processes, {args.seconds:.0f} s per figure, "
              f"{os.cpu_count()} cores, PostgreSQL at {url.rsplit('@', 1)[-1]}")
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        rows = [  # label, (processes, threads), ours, ceiling, target rate, target ratio
            ("(a) single transfers between players", (c, 1), between_players,
             raw_single("a", "transfer", lambda a, rng: (cash_id[a], 0)), None, 0.5),
            ("(b) single transfers touching the house", (c, 1), with_house,
             raw_single("b", "settlement", lambda a, rng: (house_id, rng.randrange(16))),
             2_000, None),
            # One process whose 16 request threads share one GroupPoster (an API or worker
            # process); the ceiling beside it runs the same 16 threads of bare SQL.
            ("(b) the same through GroupPoster", (1, c), with_house_grouped,
             raw_single("g", "settlement", lambda a, rng: (house_id, rng.randrange(16))),
             2_000, None),
            (f"(c) batched postings ({BATCH}/batch)", (2, 1), batched, raw_batched, None, 0.6),
        ]
        failed = False
        for label, (procs, threads), body, raw_body, target, target_ratio in rows:
            if args.only and label[1] not in args.only:
                continue
            # Interleaved rounds (ledger, ceiling, ledger, ceiling, ...), each side args.seconds
            # in all: a change of the machine's load during the run falls on both sides.
            ours, ceiling, our_errors, ceiling_errors = 0.0, 0.0, [], []
            for _ in range(args.rounds):
                rate, errors = run_processes(procs, threads, args.seconds / args.rounds, body)
                ours, our_errors = ours + rate / args.rounds, our_errors + errors
                rate, errors = run_processes(procs, threads, args.seconds / args.rounds, raw_body)
                ceiling, ceiling_errors = ceiling + rate / args.rounds, ceiling_errors + errors
            if our_errors or ceiling_errors or ceiling <= 0:
                failed = True
                print(f"{label:<42} FAILED: no figure, no ratio. ledger errors: "
                      f"{our_errors[:3] or 'none'}; ceiling errors: {ceiling_errors[:3] or 'none'}",
                      flush=True)
                continue
            notes = []
            if target:
                notes.append(f"target >= {target:,}/s: {'met' if ours >= target else 'NOT met'}")
            if target_ratio:
                met = ours >= target_ratio * ceiling
                notes.append(f"target >= {target_ratio} x ceiling: {'met' if met else 'NOT met'}")
            print(f"{label:<42} {ours:>8,.0f} postings/s   raw SQL ceiling {ceiling:>8,.0f}/s   "
                  f"ratio {ours / ceiling:.2f}  " + "; ".join(notes), flush=True)
        for name, db in (("ledger", url), ("raw SQL ceiling", raw_url)):
            check_engine = make_engine(sqlalchemy_url(db), pool_size=1)
            with check_engine.begin() as conn:
                violations = check(conn)
            check_engine.dispose()
            failed = failed or bool(violations)
            print(f"ledger check on the {name} database:",
                  "all invariants hold" if not violations else violations[:3])
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if failed:
        print("ledger benchmark FAILED: see the errors above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
