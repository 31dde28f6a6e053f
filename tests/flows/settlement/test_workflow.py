"""The settlement workflow on the real Temporal dev server with a real worker: batches,
continue-as-new, progress query and search attributes, multi-market parlays, resettlement,
rollback, a batch whose completion is lost after its commit."""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from ledger import AccountRef
from settlepay import search_attributes, task_queues
from store import settlements
from tests.support.factories import ledger_violations
from tests.support.settlement import (
    account,
    bet_row,
    cash,
    funded_player,
    place,
    post_result,
    roll_back,
)
from workflows.contracts.settlement import (
    WORKFLOW,
    BatchRequest,
    BatchResult,
    SettlementProgress,
    SettlementRun,
    workflow_id,
)
from workflows.settlement import MarketSettlementWorkflow


async def settle(client, market, version, mode="settle", **kw):
    handle = await client.start_workflow(
        WORKFLOW, SettlementRun(market_id=market, version=version, mode=mode, **kw),
        id=workflow_id(market, version, mode), task_queue=task_queues.SETTLEMENT,
        result_type=SettlementProgress)
    return handle, await handle.result()


async def test_batches_continue_as_new_and_show_progress(temporal_env, settlement_worker, engine,
                                                        settings, market):
    players = [funded_player(engine, 3_000) for _ in range(4)]
    bets = [place(engine, settings, p, 1_000, [(market, sel, "2.00")])
            for p in players for sel in ("home", "away", "home")]
    post_result(engine, settings, market, 1,
                {"home": {"result": "won"}, "away": {"result": "lost"}})

    # 12 bets, batches of 2, 2 in flight, one round per run: several continue-as-new hops.
    handle, report = await settle(temporal_env.client, market, 1, batch_size=2, concurrency=2,
                                  rounds_per_run=1)
    assert report.state == "settled" and report.processed == 12 and report.posted == 12
    assert report.runs >= 3                                   # history stayed bounded
    assert all(cash(engine, p) == 4_000 for p in players)     # two winners at 2.00 each
    assert all(bet_row(engine, b)["status"] == "settled" for b in bets)

    progress = await handle.query("progress", result_type=SettlementProgress)
    assert progress.processed == 12 and progress.state == "settled"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(search_attributes.MARKET_ID) == market
    assert desc.typed_search_attributes.get(search_attributes.SETTLEMENT_PROGRESS) == 12
    with engine.connect() as conn:
        summary = settlements.summary(conn, market)
    assert summary["state"] == "settled"
    assert summary["bets"] == {"total": 12, "open": 0, "settled": 12}
    assert summary["totals"]["GBP"] == {"stake": 12_000, "paid": 16_000, "house": -4_000}
    assert ledger_violations(engine) == []


async def test_parlay_on_several_markets_settles_when_the_last_leg_resolves(
        temporal_env, settlement_worker, engine, settings, market):
    m2, m3 = market + "_b", market + "_c"
    p = funded_player(engine, 1_000)
    parlay = place(engine, settings, p, 1_000,
                   [(market, "a", "2.00"), (m2, "b", "3/1"), (m3, "c", "+150")],
                   bet_type="parlay")
    post_result(engine, settings, market, 1, {"a": {"result": "won"}})
    _, first = await settle(temporal_env.client, market, 1)
    assert first.pending == 1 and bet_row(engine, parlay)["status"] == "open"
    post_result(engine, settings, m2, 1, {"b": {"result": "won"}})
    _, second = await settle(temporal_env.client, m2, 1)
    assert second.pending == 1 and cash(engine, p) == 0
    post_result(engine, settings, m3, 1, {"c": {"result": "won"}})
    _, last = await settle(temporal_env.client, m3, 1)
    assert last.posted == 1
    assert cash(engine, p) == 1_000 * 2 * 4 * 5 // 2          # 2.00 x 5.00 x 2.50 = 25.00 -> 250.00
    row = bet_row(engine, parlay)
    assert row["status"] == "settled" and row["version"] == 3  # sum of the legs' result versions

    # A correction on the first market (leg voided) resettles the parlay at 4.00 x 2.50
    # (3/1 is 4.00).
    post_result(engine, settings, market, 2, {"a": {"result": "lost", "void_factor": "1"}})
    _, corrected = await settle(temporal_env.client, market, 2)
    assert corrected.posted == 1 and cash(engine, p) == 10_000        # 1,000 x 4.00 x 2.50
    assert bet_row(engine, parlay)["version"] == 4
    assert ledger_violations(engine) == []


async def test_same_market_twice_at_once_pays_once(temporal_env, settlement_worker, engine,
                                                   settings, market):
    players = [funded_player(engine, 2_000) for _ in range(3)]
    for p in players:
        place(engine, settings, p, 2_000, [(market, "x", "1.50")])
    post_result(engine, settings, market, 1, {"x": {"result": "won"}})
    client = temporal_env.client
    runs = [client.start_workflow(WORKFLOW,
                                  SettlementRun(market_id=market, version=1, batch_size=1),
                                  id=f"{workflow_id(market, 1)}-dup{i}",
                                  task_queue=task_queues.SETTLEMENT,
                                  result_type=SettlementProgress)
            for i in range(3)]
    handles = await asyncio.gather(*runs)
    reports = await asyncio.gather(*(h.result() for h in handles))
    assert sum(r.posted for r in reports) == 3
    assert all(cash(engine, p) == 3_000 for p in players)
    assert ledger_violations(engine) == []


async def test_a_lost_batch_completion_is_retried_without_paying_twice(temporal_env, engine,
                                                                       settings, market):
    """The batch commits, then the worker 'dies' before reporting: Temporal retries the batch."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio import activity

    from activities.settlement import SettlementActivities
    from workflows.contracts.settlement import Activity

    class CrashAfterCommit(SettlementActivities):
        crashed = 0

        @activity.defn(name=Activity.BATCH)
        def settle_batch(self, req: BatchRequest) -> BatchResult:
            result = super().settle_batch(req)
            if CrashAfterCommit.crashed < 2:
                CrashAfterCommit.crashed += 1
                raise RuntimeError("worker lost after commit")
            return result

    acts = CrashAfterCommit(engine, settings)
    queue = f"crash-{market}"
    p = funded_player(engine, 4_000)
    for _ in range(4):
        place(engine, settings, p, 1_000, [(market, "w", "3.00")])
    post_result(engine, settings, market, 1, {"w": {"result": "won"}})
    with ThreadPoolExecutor(4) as pool:
        async with Worker(temporal_env.client, task_queue=queue,
                          workflows=[MarketSettlementWorkflow],
                          activities=acts.all(), activity_executor=pool):
            handle = await temporal_env.client.start_workflow(
                WORKFLOW, SettlementRun(market_id=market, version=1, batch_size=2),
                id=workflow_id(market, 1), task_queue=queue, result_type=SettlementProgress)
            report = await asyncio.wait_for(handle.result(), 60)
    assert CrashAfterCommit.crashed == 2
    assert cash(engine, p) == 12_000                          # four winners at 3.00, paid once each
    assert report.processed == 4
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert ledger_violations(engine) == []


async def test_rollback_workflow_reopens_bets(temporal_env, settlement_worker, engine, settings,
                                              market):
    p = funded_player(engine, 2_000)
    a = place(engine, settings, p, 1_000, [(market, "h", "4.00")])
    place(engine, settings, p, 1_000, [(market, "a", "4.00")])
    post_result(engine, settings, market, 1, {"h": {"result": "won"}, "a": {"result": "lost"}})
    await settle(temporal_env.client, market, 1)
    assert cash(engine, p) == 4_000
    roll_back(engine, settings, market, 1)
    _, report = await settle(temporal_env.client, market, 1, mode="rollback")
    assert report.state == "rolled_back" and report.posted == 2
    assert cash(engine, p) == 0 and account(engine, AccountRef.bets_in_play(p, "GBP")) == 2_000
    assert bet_row(engine, a)["status"] == "open"
    with engine.connect() as conn:
        assert settlements.summary(conn, market)["state"] == "rolled_back"
    assert ledger_violations(engine) == []
