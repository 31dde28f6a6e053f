"""A settlement worker in a process of its own, for the kill test: every batch holds its
transaction open for a while after its work (before COMMIT), so a SIGKILL lands mid-batch.

    python -m tests.flows.settlement.worker_process <database url> <temporal address> <task queue>
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from temporalio.worker import Worker

from commands import settlement as settlements
from settlepay.config import Settings
from settlepay.db import make_engine
from settlepay.temporal import connect
from workers import wiring

_settle_range = settlements.settle_range


def slow_settle_range(*args, **kwargs):
    out = _settle_range(*args, **kwargs)
    print(f"batch {args[5]}..{args[6]} part {kwargs.get('part')} written, not committed",
          flush=True)
    time.sleep(1.0)   # the transaction is still open: a kill now must roll everything back
    return out


async def main(url: str, address: str, queue: str) -> None:
    settlements.settle_range = slow_settle_range
    settings = Settings(database_url=url)
    engine = make_engine(settings.sqlalchemy_url, pool_size=2, settings=settings)
    client = await connect(settings, address=address)
    with ThreadPoolExecutor(2) as pool:
        workflows, activities = wiring.settlement_queue(engine, settings)
        async with Worker(client, task_queue=queue, workflows=workflows,
                          activities=activities,
                          activity_executor=pool, max_concurrent_activities=2):
            print("worker ready", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
