"""Settlement fixtures: a fresh market id, and a real worker for the settlement task queue
against the session database. Helpers live in tests/support/settlement.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import pytest_asyncio
from temporalio.worker import Worker

from settlepay import task_queues
from tests.support.settlement import uid
from workers import wiring


@pytest.fixture
def market() -> str:
    return uid("mkt")


@pytest_asyncio.fixture(scope="session")
async def settlement_worker(temporal_env, engine, settings) -> AsyncIterator[Worker]:
    """A real worker polling the settlement task queue, against the session database."""
    workflows, activities = wiring.settlement_queue(engine, settings)
    executor = ThreadPoolExecutor(max_workers=6)
    worker = Worker(temporal_env.client, task_queue=task_queues.SETTLEMENT, workflows=workflows,
                    activities=activities, activity_executor=executor,
                    max_concurrent_activities=6)
    async with worker:
        yield worker
    executor.shutdown()
