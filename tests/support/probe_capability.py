"""A minimal capability for testing the worker entrypoint (workers/main.py): one workflow, one
sync activity that uses the worker's database engine. Not part of the product."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import threading

    from sqlalchemy import Engine, text


@workflow.defn(sandboxed=True)
class ProbeWorkflow:
    @workflow.run
    async def run(self, name: str) -> dict[str, str]:
        return await workflow.execute_activity("probe", name,
                                               start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(sandboxed=True)
class ClockReadingWorkflow:
    """Reads the wall clock, which a workflow must never do: the sandbox must refuse it."""

    @workflow.run
    async def run(self) -> str:
        import datetime

        return datetime.datetime.now().isoformat()


def activities(engine: Engine) -> list[Callable[..., Any]]:
    @activity.defn(name="probe")
    def probe(name: str) -> dict[str, str]:
        with engine.connect() as conn:
            database = conn.execute(text("SELECT current_database()")).scalar_one()
        return {"hello": name, "database": database, "thread": threading.current_thread().name}

    return [probe]


WORKFLOWS = [ProbeWorkflow]
