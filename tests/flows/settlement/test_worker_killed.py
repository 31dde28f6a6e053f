"""A worker process killed (SIGKILL) in the middle of a batch: its open transaction is rolled
back, Temporal retries the batch on another worker, and every bet is paid exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text
from temporalio.worker import Worker

from tests.support.factories import ledger_violations
from tests.support.settlement import cash, funded_player, place, post_result
from workers import wiring
from workflows.contracts.settlement import WORKFLOW, SettlementProgress, SettlementRun, workflow_id

ROOT = Path(__file__).resolve().parents[3]


async def wait_for_line(proc, needle: str, timeout: float = 180) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if needle in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker exited early ({proc.returncode})")
    raise AssertionError(f"worker never printed {needle!r}")


async def test_worker_killed_mid_batch_pays_every_bet_once(temporal_env, engine, settings,
                                                           database_url, market):
    players = [funded_player(engine, 2_000) for _ in range(10)]
    for p in players:
        for _ in range(4):
            place(engine, settings, p, 500, [(market, "win", "2.00")])
    post_result(engine, settings, market, 1, {"win": {"result": "won"}})
    queue = f"kill-{market}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.flows.settlement.worker_process", database_url,
         temporal_env.client.service_client.config.target_host, queue],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        await wait_for_line(proc, "worker ready")
        handle = await temporal_env.client.start_workflow(
            WORKFLOW,
            SettlementRun(market_id=market, version=1, batch_size=10, concurrency=2,
                          batch_timeout_seconds=3),
            id=workflow_id(market, 1), task_queue=queue, result_type=SettlementProgress)
        await wait_for_line(proc, "written, not committed")
        proc.send_signal(signal.SIGKILL)          # mid-batch: the work is done, the COMMIT is not
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with engine.connect() as conn:
        settled_so_far = conn.execute(text(
            "SELECT count(*) FROM bet_settlements WHERE market_id = :m"), {"m": market}).scalar()
    assert settled_so_far < 40                   # the kill really interrupted the settlement

    with ThreadPoolExecutor(4) as pool:
        workflows, activities = wiring.settlement_queue(engine, settings)
        async with Worker(temporal_env.client, task_queue=queue, workflows=workflows,
                          activities=activities,
                          activity_executor=pool):
            report = await asyncio.wait_for(handle.result(), 90)
    assert report.state == "settled"
    assert all(cash(engine, p) == 2_000 - 2_000 + 4 * 1_000 for p in players)   # each bet paid once
    with engine.connect() as conn:
        assert conn.execute(text("""
            SELECT count(*) FROM ledger_transactions WHERE kind = 'settlement'
               AND reference IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)"""),
            {"m": market}).scalar() == 40
    assert ledger_violations(engine) == []
