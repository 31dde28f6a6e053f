"""Housekeeping of the API process: stored Idempotency-Key answers pruned on a schedule.

Every API process runs `prune_idempotency_records` in the background from its start (the app's
lifespan): at once, then every `Settings.idempotency_prune_interval_seconds`, it deletes the
finished (and released) records older than `Settings.idempotency_retention_hours` (24 h by
default, as Stripe keeps keys), so the table holds about a day of requests. A record still held
by a running request is never deleted (store.idempotency.prune).

Why here and not in the worker: the records are the API's own, the API is what must run for
them to exist, and no Temporal is needed to delete rows. With several API processes, one prunes
at a time: the deletion runs under a transaction-level advisory lock that the others skip
(`pg_try_advisory_xact_lock`), so they never queue on each other's rows.
Must never: delete a record younger than the retention, or one whose request may be running.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from store import idempotency

log = logging.getLogger("settlepay.api.housekeeping")

# pg_try_advisory_xact_lock key of the pruning (any constant; this is "idempprn" in ASCII).
PRUNE_LOCK = 0x6964656D7070726E


def prune_idempotency_once(engine: Engine, retention: timedelta) -> int | None:
    """Delete records older than `retention`; their number, or None when another process is
    pruning right now."""
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                            {"key": PRUNE_LOCK}).scalar_one():
            return None
        return idempotency.prune(conn, retention)


async def prune_idempotency_records(app: FastAPI) -> None:
    """Prune now and then every interval, until cancelled (the app's lifespan ends)."""
    settings = app.state.settings
    retention = timedelta(hours=settings.idempotency_retention_hours)
    while True:
        engine = app.state.engine
        if engine is not None:
            try:
                pruned = await run_in_threadpool(prune_idempotency_once, engine, retention)
                if pruned:
                    log.info("pruned %d idempotency records older than %s", pruned, retention)
            except Exception:   # the database is away for now: try again next round
                log.exception("pruning idempotency records failed")
        await asyncio.sleep(settings.idempotency_prune_interval_seconds)
