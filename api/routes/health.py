"""Liveness and readiness probes (not under /v1: they are for the platform, not partners).

    GET /healthz   200 while the process serves requests; touches nothing else
    GET /readyz    200 when the database and Temporal answer, else 503 naming what failed
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.deps import temporal_client
from api.problems import Problem

CHECK_TIMEOUT = 2.0

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _database(request: Request) -> str:
    engine = request.app.state.engine

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(run_in_threadpool(ping), CHECK_TIMEOUT)
        return "ok"
    except Exception as error:
        return f"unreachable: {type(error).__name__}"


async def _temporal(request: Request) -> str:
    try:
        client = await asyncio.wait_for(temporal_client(request.app), CHECK_TIMEOUT + 2)
        if client is None:
            return "unreachable"
        healthy = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT))
        return "ok" if healthy else "not serving"
    except Exception as error:
        return f"unreachable: {type(error).__name__}"


@router.get("/readyz", summary="Readiness: database and Temporal reachable",
            responses={503: {"description": "A dependency is unreachable (problem+json)"}})
async def readyz(request: Request) -> dict:
    database, temporal = await asyncio.gather(_database(request), _temporal(request))
    checks = {"database": database, "temporal": temporal}
    if database != "ok" or temporal != "ok":
        raise Problem(503, "not_ready", "Not ready",
                      "A dependency is unreachable: " + ", ".join(
                          f"{name} {state}" for name, state in checks.items() if state != "ok"),
                      extensions={"checks": checks})
    return {"status": "ready", "checks": checks}
