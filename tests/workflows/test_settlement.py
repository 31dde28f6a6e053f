"""The market settlement workflow's runbook, one test per branch, on the time-skipping server
with stub activities registered under the real names (no PostgreSQL): settle, resettle,
rollback, a refusal at begin, and continue-as-new after N rounds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from settlepay import search_attributes
from tests.support.factories import wait_until
from workflows.contracts.refusal import Refusal
from workflows.contracts.settlement import (
    WORKFLOW,
    Activity,
    BatchRequest,
    BatchResult,
    FinishRequest,
    FinishResult,
    MarketState,
    Mode,
    PlanRequest,
    RunRef,
    RunState,
    SettlementProgress,
    SettlementRefusal,
    SettlementRun,
    workflow_id,
)
from workflows.settlement import MarketSettlementWorkflow


@dataclass
class World:
    """What the stubs answer (round ends in order, the begin state or refusal), and what they
    were asked."""

    round_ends: list[str]                       # plan answers these, then None
    begin_state: MarketState = MarketState.SETTLING
    begin_refusal: Refusal | None = None
    release: asyncio.Event | None = None        # batches wait for it when set
    begun: list[RunRef] = field(default_factory=list)
    plans: list[PlanRequest] = field(default_factory=list)
    batches: list[BatchRequest] = field(default_factory=list)
    finished: list[FinishRequest] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=Activity.BEGIN)
        async def begin(run: RunRef) -> MarketState:
            self.begun.append(run)
            if self.begin_refusal is not None:
                raise self.begin_refusal.as_error()
            return self.begin_state

        @activity.defn(name=Activity.PLAN)
        async def plan(req: PlanRequest) -> str | None:
            self.plans.append(req)
            return self.round_ends[len(self.plans) - 1] if len(self.plans) <= len(
                self.round_ends) else None

        @activity.defn(name=Activity.BATCH)
        async def settle_batch(req: BatchRequest) -> BatchResult:
            self.batches.append(req)
            if self.release is not None:
                await self.release.wait()
            return BatchResult(processed=3, posted=2, pending=1, skipped=0, payout_delta=100,
                               needs_review=1 if req.part == 0 else 0)

        @activity.defn(name=Activity.FINISH)
        async def finish(req: FinishRequest) -> FinishResult:
            self.finished.append(req)
            state = (MarketState.ROLLED_BACK if req.run.mode == Mode.ROLLBACK
                     else MarketState.SETTLED)
            return FinishResult(state=state, bets={"total": req.processed}, totals={})

        return [begin, plan, settle_batch, finish]


@pytest.fixture(scope="module")
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The time-skipping server with the search attributes the workflow upserts."""
    kinds = {"KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
             "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT}
    wanted = {key.name: kinds[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
              for key in search_attributes.ALL}
    client = time_skipping_env.client
    try:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=client.namespace, search_attributes=wanted))
    except Exception as error:   # registered by an earlier module of this session
        assert "already" in str(error).lower(), error
    return time_skipping_env


async def run(env: WorkflowEnvironment, world: World, *, mode: Mode = Mode.SETTLE,
              during: Callable[[WorkflowHandle[Any, SettlementProgress]], Any] | None = None,
              **options: Any) -> SettlementProgress:
    market = f"mkt_{uuid.uuid4().hex[:8]}"
    queue = f"settlement-runbook-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[MarketSettlementWorkflow],
                      activities=world.activities()):
        handle = await env.client.start_workflow(
            WORKFLOW, SettlementRun(market_id=market, version=2, mode=mode, **options),
            id=workflow_id(market, 2, mode), task_queue=queue, result_type=SettlementProgress)
        if during is not None:
            await during(handle)
        return await handle.result()


async def test_a_settle_run_settles_round_after_round_then_finishes(env):
    world = World(round_ends=["b0004", "b0008"])
    report = await run(env, world, batch_size=2, concurrency=2)
    assert report.state == RunState.SETTLED and report.mode == Mode.SETTLE
    assert [ref.mode for ref in world.begun] == [Mode.SETTLE]
    assert [(p.after, p.size) for p in world.plans] == [("", 4), ("b0004", 4), ("b0008", 4)]
    assert sorted((b.lo, b.hi, b.part, b.parts) for b in world.batches) == [
        ("", "b0004", 0, 2), ("", "b0004", 1, 2), ("b0004", "b0008", 0, 2),
        ("b0004", "b0008", 1, 2)]
    assert (report.processed, report.posted, report.pending, report.payout_delta) == (
        12, 8, 4, 400)
    assert report.needs_review == 2 and report.cursor == "b0008" and report.runs == 1
    assert [(f.processed, f.posted) for f in world.finished] == [(12, 8)]


async def test_a_resettle_run_shows_resettling_while_it_runs(env):
    world = World(round_ends=["b1"], begin_state=MarketState.RESETTLING, release=asyncio.Event())

    async def during(handle: WorkflowHandle[Any, SettlementProgress]) -> None:
        async def resettling() -> bool:
            progress = await handle.query("progress", result_type=SettlementProgress)
            return progress.state == RunState.RESETTLING and bool(world.batches)
        await wait_until(resettling)
        world.release.set()

    report = await run(env, world, concurrency=1, during=during)
    assert report.state == RunState.SETTLED and len(world.finished) == 1


async def test_a_rollback_run_reverses_every_round_and_ends_rolled_back(env):
    world = World(round_ends=["b5"], begin_state=MarketState.ROLLING_BACK)
    report = await run(env, world, mode=Mode.ROLLBACK, concurrency=3)
    assert report.state == RunState.ROLLED_BACK and report.mode == Mode.ROLLBACK
    assert {b.run.mode for b in world.batches} == {Mode.ROLLBACK} and len(world.batches) == 3
    assert world.finished[0].run.workflow_id.startswith("rollback-")


async def test_a_refusal_at_begin_ends_the_run_refused_without_touching_a_bet(env):
    world = World(round_ends=["b1"], begin_refusal=Refusal(
        SettlementRefusal.RESULT_ROLLED_BACK, "result version 2 was rolled back"))
    report = await run(env, world)
    assert report.state == RunState.REFUSED
    assert (report.refusal_code, report.refusal_reason) == (
        SettlementRefusal.RESULT_ROLLED_BACK, "result version 2 was rolled back")
    assert len(world.begun) == 1
    assert world.plans == [] and world.batches == [] and world.finished == []


async def test_a_long_market_continues_as_new_after_its_rounds_and_keeps_its_totals(env):
    world = World(round_ends=["b1", "b2", "b3", "b4", "b5"])
    report = await run(env, world, concurrency=1, rounds_per_run=2)
    assert report.state == RunState.SETTLED
    assert report.runs == 3                      # 2 + 2 + 1 rounds, begin only in the first
    assert len(world.begun) == 1 and len(world.finished) == 1
    assert [p.after for p in world.plans] == ["", "b1", "b2", "b3", "b4", "b5"]
    assert (report.processed, report.posted, report.cursor) == (15, 10, "b5")
    assert world.finished[0].processed == 15
