"""The FastAPI application: /v1 routers, problem+json errors, Idempotency-Key, probes.

    app = create_app(settings)                            # makes its engine and Temporal client
    app = create_app(settings, engine=e, temporal_client=c)   # tests: bring your own

What the app holds lives on `app.state` (`settings`, `engine`, `temporal`) and reaches routes
through the dependencies in api/deps.py. An engine or client passed in belongs to the caller
and is not closed here. Temporal is not needed to start: the client is made in the background
and on first use, and /readyz says whether it is there.

To add a router: create api/routes/<area>.py with `router = APIRouter(prefix="/v1/<area>", ...)`
and add it to ROUTERS below. This module holds no business rules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine
from temporalio.client import Client

from api import openapi_examples, problems, telemetry
from api.body_limit import BodySizeLimit
from api.deps import temporal_client
from api.housekeeping import prune_idempotency_records
from api.idempotency import IdempotencyMiddleware
from api.nul_bytes import NulByteGuard
from api.rate_limits import RateLimitMiddleware, RateLimits
from api.routes import (
    api_keys,
    bets,
    deposits,
    geolocation,
    health,
    kyc,
    limits,
    markets,
    payout_destinations,
    players,
    promotions,
    reconciliation,
    second_factor,
    statements,
    stripe_webhooks,
    webhooks,
    withdrawals,
)
from api.versioning import ApiVersion
from settlepay.config import Settings, get_settings
from settlepay.db import make_engine

ROUTERS: list[APIRouter] = [
    health.router,
    telemetry.router,
    players.router,
    statements.router,
    api_keys.router,
    bets.router,
    markets.router,
    promotions.router,
    geolocation.router,
    limits.router,
    deposits.router,
    stripe_webhooks.router,
    kyc.router,
    second_factor.router,
    payout_destinations.router,
    withdrawals.router,
    webhooks.router,
    reconciliation.router,
]

DESCRIPTION = """Payments and settlement back office of a regulated sportsbook.

* Authenticate with `Authorization: Bearer <API key>` (or `X-Api-Key`).
* Errors are `application/problem+json`; switch on their `code`.
* POST requests take an `Idempotency-Key` header (required where money moves): retries with the
  same key and body get the first answer back, marked `Idempotent-Replayed: true`.
* Amounts are integers in minor units of their currency.
* Versions are dates. Each API key is pinned to one (the current one when it is made, or the
  `api_version` it asks for); a request without `Settlepay-Version` is served under its key's,
  `Settlepay-Version: 2026-12-01` overrides it for one request (unknown: 400
  `api_version_unknown`). Answers name their version. New members, routes, optional
  parameters, event types and problem codes are added without a new version: ignore what you
  do not know. Upgrade by rolling the key with the new `api_version`.
* Lists page with `limit`, `starting_after` and `ending_before`, newest first.
* Each API key has a rate limit: answers carry `RateLimit-*` headers; over it, 429 with
  `Retry-After`. Oversized request bodies get 413.
"""


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    owns_engine = state.engine is None
    if owns_engine:
        if not state.settings.database_url:
            raise RuntimeError("SETTLEPAY_DATABASE_URL (or DATABASE_URL) is not set")
        state.engine = make_engine(settings=state.settings,
                                   pool_size=state.settings.api_db_pool_size)
    connecting = asyncio.create_task(temporal_client(app)) if state.temporal is None else None
    pruning = asyncio.create_task(prune_idempotency_records(app))   # api/housekeeping.py
    try:
        yield
    finally:
        pruning.cancel()
        with contextlib.suppress(BaseException):
            await pruning
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
        await state.rate_limits.close()
        if owns_engine:
            state.engine.dispose()
            state.engine = None


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               temporal_client: Client | None = None) -> FastAPI:
    # FastAPI's native telemetry off: the server spans are the instrumentation's
    # (telemetry.instrument), the HTTP metrics RequestContext's; no per-request check of it.
    app = FastAPI(title="settlepay API", version="1", description=DESCRIPTION,
                  lifespan=_lifespan, docs_url="/docs", openapi_url="/openapi.json",
                  telemetry={"tracing": False, "metrics": False, "logs": False,
                             "operation_spans": False})
    app.state.settings = settings or get_settings()
    app.state.engine = engine
    app.state.temporal = temporal_client
    app.state.temporal_lock = asyncio.Lock()
    app.state.temporal_tried_at = float("-inf")
    app.state.rate_limits = RateLimits(app.state.settings)
    problems.install(app)
    app.add_middleware(IdempotencyMiddleware)
    # Added last, so it runs first: a NUL the database cannot store is refused (422) before an
    # Idempotency-Key is claimed or a route runs.
    app.add_middleware(NulByteGuard)
    # Outside the NUL guard and the Idempotency-Key: a request over its key's rate limit is
    # refused (429) before either reads its body. It authenticates the key for all inside.
    app.add_middleware(RateLimitMiddleware)
    # An unknown Settlepay-Version is refused before anything else looks at the request, and
    # an oversized body before anything reads it (413).
    app.add_middleware(ApiVersion)
    app.add_middleware(BodySizeLimit)
    # A database that cannot be reached, wherever below it shows (rate limiter, Idempotency-Key,
    # authentication, a route), is answered 503 `database_unavailable`, not 500.
    app.add_middleware(problems.DatabaseUnavailableGuard)
    # Outermost of ours: request id, trace ids and HTTP metrics for every answer, a NUL's 422
    # included. The FastAPI instrumentation's server span wraps them all.
    app.add_middleware(telemetry.RequestContext)
    telemetry.instrument(app, app.state.settings.telemetry_enabled)
    for router in ROUTERS:
        app.include_router(router)
    openapi_examples.install(app)   # every operation's examples (api/openapi_examples.py)
    return app
