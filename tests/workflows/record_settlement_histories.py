"""Re-record the settlement workflow's stored histories from real runs (not part of `make test`).

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/workflows/record_settlement_histories.py

Each scenario places real bets, records real results through commands/settlement.py and runs
`MarketSettlement` on the Temporal dev server with a real worker against PostgreSQL, then
writes every run's history to tests/workflows/histories/settlement_<name>[_run<n>].json, which
tests/workflows/test_replay_settlement.py replays against the current workflow code.
Re-record after a change meant to alter new runs only; a change that breaks the replay of a
history that running workflows may have is a bug, or needs `workflow.patched`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from settlepay.config import Settings
from tests.support.settlement import funded_player, place, post_result, roll_back
from workers import wiring
from workflows.contracts.settlement import (
    WORKFLOW,
    Mode,
    SettlementProgress,
    SettlementRun,
    workflow_id,
)

HISTORIES = Path(__file__).parent / "histories"
WIN, LOSE = {"result": "won"}, {"result": "lost"}

Scenario = Callable[[Client, str, Engine, Settings, str], Awaitable[None]]


async def _run(client: Client, queue: str, name: str | None, market: str, version: int,
               mode: Mode = Mode.SETTLE, **options: int) -> SettlementProgress:
    """Run one settlement to its end and store the history of each of its runs (None: a
    run that only sets the scene, not stored)."""
    handle = await client.start_workflow(
        WORKFLOW, SettlementRun(market_id=market, version=version, mode=mode, **options),
        id=workflow_id(market, version, mode), task_queue=queue, result_type=SettlementProgress)
    report = await handle.result()
    run_ids, run_id = [], handle.first_execution_run_id if name else None
    while run_id:
        run_ids.append(run_id)
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        last = history.events[-1]
        attrs = last.workflow_execution_continued_as_new_event_attributes
        run_id = attrs.new_execution_run_id if last.HasField(
            "workflow_execution_continued_as_new_event_attributes") else ""
        suffix = f"_run{len(run_ids)}" if len(run_ids) > 1 or run_id else ""
        path = HISTORIES / f"settlement_{name}{suffix}.json"
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    return report


async def _settled(client: Client, queue: str, engine: Engine, settings: Settings,
                   market: str) -> None:
    p = funded_player(engine, 3_000)
    for selection in ("home", "away", "home"):
        place(engine, settings, p, 1_000, [(market, selection, "2.50")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    await _run(client, queue, "settled", market, 1, batch_size=2, concurrency=2)


async def _resettled(client: Client, queue: str, engine: Engine, settings: Settings,
                     market: str) -> None:
    p = funded_player(engine, 2_000)
    for selection in ("home", "away"):
        place(engine, settings, p, 1_000, [(market, selection, "3.00")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    await _run(client, queue, None, market, 1)
    post_result(engine, settings, market, 2, {"home": LOSE, "away": WIN})
    await _run(client, queue, "resettled", market, 2)


async def _rolled_back(client: Client, queue: str, engine: Engine, settings: Settings,
                       market: str) -> None:
    p = funded_player(engine, 2_000)
    for selection in ("home", "away"):
        place(engine, settings, p, 1_000, [(market, selection, "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    await _run(client, queue, None, market, 1)
    roll_back(engine, settings, market, 1)
    await _run(client, queue, "rolled_back", market, 1, Mode.ROLLBACK)


async def _refused(client: Client, queue: str, engine: Engine, settings: Settings,
                   market: str) -> None:
    p = funded_player(engine, 1_000)
    place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN})
    roll_back(engine, settings, market, 1)       # before its settle run began
    report = await _run(client, queue, "refused", market, 1)
    assert report.refusal_code == "result_rolled_back"


async def _continued_as_new(client: Client, queue: str, engine: Engine, settings: Settings,
                            market: str) -> None:
    players = [funded_player(engine, 2_000) for _ in range(3)]
    for p in players:
        for selection in ("home", "away"):
            place(engine, settings, p, 1_000, [(market, selection, "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    report = await _run(client, queue, "continued_as_new", market, 1, batch_size=2,
                        concurrency=1, rounds_per_run=2)
    assert report.runs >= 2


SCENARIOS: dict[str, Scenario] = {
    "settled": _settled,
    "resettled": _resettled,
    "rolled_back": _rolled_back,
    "refused": _refused,
    "continued_as_new": _continued_as_new,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_record(name: str, temporal_env, engine: Engine, settings: Settings) -> None:
    queue = f"record-settlement-{uuid.uuid4().hex[:8]}"
    workflows, activities = wiring.settlement_queue(engine, settings)
    with ThreadPoolExecutor(4) as pool:
        async with Worker(temporal_env.client, task_queue=queue, workflows=workflows,
                          activities=activities, activity_executor=pool):
            await SCENARIOS[name](temporal_env.client, queue, engine, settings,
                                  f"mkt_{uuid.uuid4().hex[:8]}")
