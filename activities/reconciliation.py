"""The reconciliation workflow's activity: one run through reconciliation.runner.

`ReconciliationActivities(engine, settings, gateway)`, wired in workers/wiring.py. The run id
is the workflow id: an attempt after a recorded run answers that run instead of recording a
second one. Orphaned deposits are restarted with the worker's own Temporal client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from temporalio import activity

from adapters.gateway import PaymentGateway
from reconciliation import runner
from reconciliation.model import Window
from settlepay.config import Settings
from store import reconciliation as store
from workflows.contracts.reconciliation import Activity, RunInput, RunSummary, Verdict

T = TypeVar("T")


class ReconciliationActivities:
    def __init__(self, engine: Engine, settings: Settings, gateway: PaymentGateway) -> None:
        self.engine = engine
        self.settings = settings
        self.gateway = gateway

    def all(self) -> list[Callable[..., Any]]:
        return [self.run]

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return work(conn)

    @activity.defn(name=Activity.RUN)
    async def run(self, request: RunInput) -> RunSummary:
        recorded = await asyncio.to_thread(self._read,
                                           lambda conn: store.get_run(conn, request.run_id))
        if recorded is None:
            since = request.since
            if since is None:
                since = await asyncio.to_thread(
                    runner.default_since, self.engine,
                    self.settings.withdrawal_gateway_provider, request.until)
            options = runner.options_from(self.settings, Window(since, request.until),
                                          repair=request.repair, run_id=request.run_id,
                                          actor=request.actor)
            if request.grace_seconds is not None:
                options.grace_seconds = request.grace_seconds
            recorded = (await runner.run(self.engine, self.settings, self.gateway, options,
                                         client=activity.client())).run
        run_id = recorded["id"]
        open_breaks = len(await asyncio.to_thread(self._read, lambda conn: store.list_breaks(
            conn, status="open", run_id=run_id, limit=100_000)))
        return RunSummary(recorded["id"], Verdict(recorded["verdict"]), recorded["items"],
                          recorded["matched"], recorded["repaired"], open_breaks)
