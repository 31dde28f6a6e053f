"""FastAPI dependencies for what the app holds: settings, database engine, Temporal client.

    def route(engine: EngineDep, settings: SettingsDep, client: TemporalDep) -> ...: ...
    # TemporalDep answers a 503 problem while Temporal is unreachable

The app starts without Temporal (readyz reports it): `get_temporal` connects on first use and
tries again at most every few seconds, so one slow outage does not turn into a connect storm.
Nothing here opens database transactions; routes do that with `settlepay.db.transaction`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine
from temporalio.client import Client

from api.problems import Problem
from settlepay.config import Settings

RECONNECT_INTERVAL = 5.0
CONNECT_TIMEOUT = 3.0

log = logging.getLogger("settlepay.api")


# Coroutines, not plain functions: FastAPI runs a plain-function dependency on its thread pool,
# a thread hop per request for an attribute read.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def temporal_client(app: FastAPI) -> Client | None:
    """The app's Temporal client, connecting now if it has none (and the last try was a while
    ago); None while Temporal is unreachable."""
    state = app.state
    if state.temporal is not None:
        return state.temporal
    async with state.temporal_lock:
        if (state.temporal is None
                and time.monotonic() - state.temporal_tried_at >= RECONNECT_INTERVAL):
            state.temporal_tried_at = time.monotonic()
            from settlepay.temporal import connect

            try:
                state.temporal = await asyncio.wait_for(connect(state.settings), CONNECT_TIMEOUT)
            except Exception as error:  # unreachable, refused, timed out: readyz shows it
                log.warning("Temporal at %s is not reachable: %s",
                            state.settings.temporal_address, error)
    return state.temporal


async def get_temporal(request: Request) -> Client:
    client = await temporal_client(request.app)
    if client is None:
        raise Problem(503, "temporal_unavailable", "Workflow service unavailable",
                      "The workflow engine cannot be reached right now; retry later.",
                      headers={"Retry-After": str(int(RECONNECT_INTERVAL))})
    return client


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


# How long a route waits for a workflow to take an Update (a second-factor code, a cancel, a
# review). An Update needs a worker; when none polls, Temporal would hold the request until the
# client gives up. The route answers 503 instead, and the client may retry the same request.
UPDATE_WAIT = timedelta(seconds=5)


def workflow_unavailable() -> Problem:
    """The answer when a workflow did not take an Update within UPDATE_WAIT."""
    return Problem(503, "workflow_unavailable", "The workflow is not answering right now",
                   "No worker took the request in time; retry later with the same request.",
                   headers={"Retry-After": str(int(RECONNECT_INTERVAL))})
