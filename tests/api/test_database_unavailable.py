"""A PostgreSQL that cannot be reached is a condition the API names: 503 problem+json
`database_unavailable` with Retry-After (api/problems.py), never a 500, wherever it shows on the
request path: the rate limiter (which authenticates the key), the Idempotency-Key middleware
behind it, and a route's own transaction (a signed Stripe event, no API key). The app's engine goes
through the project's fault proxy (chaos/proxy.py) to the real test database; the proxy then
resets every connection and refuses new ones, as when PostgreSQL is killed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
import pytest_asyncio
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from api.app import create_app
from api.problems import (
    STATUS_BY_CODE,
    DatabaseUnavailableGuard,
    install,
    is_database_unavailable,
)
from chaos.proxy import FaultProxy, Upstream
from sandboxes.stripe.signing import signature_header
from settlepay.db import make_engine
from tests.support.api import Keys, assert_problem
from tests.support.telemetry import captured_logs

# The caller's W3C trace context: the request's server span continues it, so its answer and log
# lines carry this trace id (no tracer provider is installed here: that one is process-wide).
TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"


@pytest.fixture
def proxy(database_url: str) -> Iterator[FaultProxy]:
    url = make_url(database_url)
    fault_proxy = FaultProxy("postgres", Upstream(port=url.port or 5432), seed=1)
    fault_proxy.start()
    yield fault_proxy
    fault_proxy.stop()


@pytest.fixture
def proxied_engine(database_url: str, settings, proxy: FaultProxy) -> Iterator[Engine]:
    url = make_url(database_url).set(drivername="postgresql+psycopg", host="127.0.0.1",
                                     port=proxy.listen_port)
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=2,
                         settings=settings)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture
async def http(api_settings, proxied_engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings, engine=proxied_engine)
    # raise_app_exceptions (the default): an exception escaping the app fails the test.
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        yield client


def _unavailable(answer: httpx.Response) -> None:
    body = assert_problem(answer, 503, "database_unavailable")
    assert answer.headers["retry-after"] == "5"
    assert "detail" in body and "5432" not in answer.text and "psycopg" not in answer.text


async def test_a_killed_database_is_a_503_through_the_rate_limiter_and_the_routes(
        http: httpx.AsyncClient, proxy: FaultProxy, keys: Keys) -> None:
    key = {"Authorization": f"Bearer {keys.partner_a.plaintext}"}
    missing = f"/v1/players/pl_{uuid.uuid4().hex[:10]}"
    before = await http.get(missing, headers=key)
    assert_problem(before, 404, "player_not_found")   # through the proxy, the database answers
    assert "ratelimit-limit" in before.headers         # the rate limiter took its token

    proxy.set_faults(reset=True)   # every connection cut, new ones refused: PostgreSQL died
    with captured_logs() as captured:
        # An API key: the rate limiter's authentication and take are the first to fail.
        limited = await http.get(missing, headers={**key, "X-Request-Id": "req-db-down-1",
                                                   "traceparent": TRACEPARENT})
        # A write with an Idempotency-Key: refused before a key is claimed or a route runs.
        write = await http.post("/v1/players", headers={**key, "Idempotency-Key": "k-1"},
                                json={"first_name": "Ada"})
        # A signed Stripe event (no API key): the route's own transaction cannot start.
        event = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event",
                            "type": "payment_intent.succeeded", "created": 1,
                            "data": {"object": {"id": "pi_x", "object": "payment_intent",
                                                "status": "succeeded", "metadata": {}}}})
        webhook = await http.post("/v1/webhooks/stripe", content=event, headers={
            "Stripe-Signature": signature_header(event, "whsec_settlepay_sandbox")})
    for answer in (limited, write, webhook):
        _unavailable(answer)

    trace_id = limited.headers["x-trace-id"]
    assert trace_id == TRACE_ID
    events = captured.events()
    request = [e for e in events if e["event"] == "request"
               and e.get("request_id") == "req-db-down-1"]
    assert len(request) == 1 and request[0]["status"] == 503
    assert request[0]["trace_id"] == trace_id
    statuses = sorted(e["status"] for e in events if e["event"] == "request")
    assert statuses == [503] * 3
    # No request of these logged an unhandled error (the app's own housekeeping may).
    assert not [e for e in events if e.get("request_id") and (
        e.get("level") == "error" or e["event"].startswith("unhandled"))]

    proxy.clear()   # PostgreSQL is back: the same request is answered again, pool recovered
    after = await http.get(missing, headers=key)
    assert_problem(after, 404, "player_not_found")


async def test_a_database_that_answered_with_an_error_is_still_a_500() -> None:
    app = FastAPI()
    install(app)
    app.add_middleware(DatabaseUnavailableGuard)

    @app.get("/duplicate")
    def duplicate() -> None:
        raise sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation())

    @app.get("/gone")
    def gone() -> None:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("reset"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        assert_problem(await client.get("/duplicate"), 500, "internal_error")
        _unavailable(await client.get("/gone"))


def test_only_an_unreachable_database_is_named_unavailable() -> None:
    assert STATUS_BY_CODE["database_unavailable"] == 503
    refused = psycopg.OperationalError("connection refused")   # no server answer: no sqlstate
    assert is_database_unavailable(refused)
    assert is_database_unavailable(sqlalchemy.exc.OperationalError("SELECT 1", {}, refused))
    assert is_database_unavailable(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))
    assert is_database_unavailable(psycopg.errors.AdminShutdown())
    assert is_database_unavailable(psycopg.errors.CannotConnectNow())
    assert is_database_unavailable(psycopg.errors.TooManyConnections())
    # The database answered and refused the statement: unexpected, a 500, not a 503.
    assert not is_database_unavailable(psycopg.errors.UniqueViolation())
    assert not is_database_unavailable(psycopg.errors.DeadlockDetected())
    assert not is_database_unavailable(
        sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()))
    assert not is_database_unavailable(sqlalchemy.exc.ProgrammingError(
        "SELECT", {}, psycopg.errors.UndefinedTable()))
    assert not is_database_unavailable(ValueError("not a database error"))
