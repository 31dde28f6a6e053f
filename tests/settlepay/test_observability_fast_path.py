"""The API's fast path for a request the head sampler drops (api/telemetry.py UnsampledFastPath)
runs the app's own stack as telemetry off does (its error middleware and handler, its
middlewares), not the instrumentation's extra layers: an exception escaping a route is answered
as with telemetry off, carries the trace ids, is logged and counted; a recorded request and an
excluded path still take the instrumentation's path."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from starlette.middleware.errors import ServerErrorMiddleware

from api import telemetry
from api.app import create_app
from settlepay.observability import metrics, tracing
from tests.support.net import free_port
from tests.support.telemetry import captured_logs

ROUTE = "/v1/test-fast-path-fails"


@pytest.fixture
def sampler(recorder) -> Iterator[tracing.HeadSampler]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert isinstance(provider.sampler, tracing.HeadSampler)
    ratio = provider.sampler.ratio
    previous = metrics.enabled()
    metrics.set_enabled(True)
    try:
        yield provider.sampler
    finally:
        provider.sampler.set_ratio(ratio)
        metrics.set_enabled(previous)


def _app(settings, engine, *, telemetry_enabled: bool):
    app = create_app(settings.model_copy(update={
        "telemetry_enabled": telemetry_enabled,
        "temporal_address": f"127.0.0.1:{free_port()}"}), engine=engine)

    @app.get(ROUTE)
    async def fails() -> dict:
        raise RuntimeError("a bug")

    return app


async def _get(app, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        return await http.get(path)


def _failures() -> float:
    return REGISTRY.get_sample_value("settlepay_http_requests_total", {
        "method": "GET", "route": ROUTE, "status": "5xx"}) or 0.0


async def test_an_unsampled_request_runs_the_apps_own_stack(settings, engine, sampler,
                                                            recorder):
    sampler.set_ratio(0.0)
    app = _app(settings, engine, telemetry_enabled=True)
    await _get(app, "/healthz")   # builds the stack
    top = app.middleware_stack
    assert isinstance(top, telemetry.UnsampledFastPath)
    assert isinstance(top.inner, ServerErrorMiddleware)
    assert type(top.inner.app).__name__ != "ExceptionHandlerMiddleware"
    assert top.app is top.instrumented and type(top.instrumented.app).__name__ == \
        "OpenTelemetryMiddleware"   # FastAPI finds the instrumentation down `.app`

    before = _failures()
    with captured_logs() as logs:
        answer = await _get(app, ROUTE)
    assert _failures() == before + 1
    off = await _get(_app(settings, engine, telemetry_enabled=False), ROUTE)
    assert answer.status_code == off.status_code == 500
    body = answer.json()
    trace_id = body.pop("trace_id")   # answered by the error middleware, outside RequestContext
    assert body == off.json()   # the same problem, plus the trace id
    assert answer.headers["content-type"] == off.headers["content-type"]
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    events = logs.events()
    logged = [e for e in events if e.get("event") == "request" and e.get("route") == ROUTE]
    assert [(e["status"], e["trace_id"]) for e in logged] == [(500, trace_id)]
    assert [e["trace_id"] for e in events if e.get("event") == "problem answered"] == [trace_id]
    assert not [s for s in recorder.spans() if s.kind == SpanKind.SERVER]


async def test_a_recorded_request_and_an_excluded_path_take_the_instrumentation(
        settings, engine, sampler, recorder):
    sampler.set_ratio(1.0)
    app = _app(settings, engine, telemetry_enabled=True)
    answer = await _get(app, ROUTE)
    assert answer.status_code == 500
    server = [s for s in recorder.spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in server] == [f"GET {ROUTE}"]
    assert format(server[0].context.trace_id, "032x") == answer.json()["trace_id"]
    assert not server[0].status.is_ok   # the exception is recorded on the span
    assert (await _get(app, "/healthz")).status_code == 200
    assert len([s for s in recorder.spans() if s.kind == SpanKind.SERVER]) == 1
