"""The API's observability edge: request ids, HTTP metrics, `/metrics`, the FastAPI spans.

- `RequestContext` (outermost of our middlewares): takes the caller's `X-Request-Id` (or makes
  one), binds it and the request's trace ids for every log line of the request
  (settlepay/observability/logs.py), answers with `X-Request-Id` and `X-Trace-Id` (a partner
  quotes them in an incident), counts the request by route template and status class and
  times it (settlepay_http_requests_total, settlepay_http_request_seconds, and
  settlepay_http_requests_in_flight while it runs), and writes one
  `request` log line.
- `router`: `GET /metrics`, the Prometheus metrics (no personal data in them): the process's,
  or with several API processes on the port, the sum over all of them (whichever answers).
- `instrument(app)`: OpenTelemetry's FastAPI instrumentation, the request's server span as the
  root of the business operation's trace (probes and /metrics excluded).

This module must never log a request's body, query string or headers.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import asgi_getter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from settlepay.observability import logs, metrics, tracing

REQUEST_ID_HEADER = "x-request-id"
TRACE_ID_HEADER = "x-trace-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNTRACED_PATHS = "healthz,readyz,metrics"
UNMATCHED = "unmatched"
QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})   # scrapes and probes
# The method label: any other method a client sends (a token of its choice) is one value.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"

log = logging.getLogger("settlepay.api.requests")
router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint() -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def instrument(app: FastAPI, enabled: bool) -> None:
    """The FastAPI server spans (telemetry on only; the tracer provider is the process's).
    The instrumentation's own HTTP metrics go nowhere (a no-op meter provider): the request
    rate, errors and durations are RequestContext's settlepay_http_* (not counted twice).
    A request the head sampler drops takes `UnsampledFastPath`."""
    if enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_PATHS,
                                           exclude_spans=["receive", "send"],
                                           meter_provider=NoOpMeterProvider())
        instrumented = app.build_middleware_stack

        def build_middleware_stack() -> ASGIApp:
            return UnsampledFastPath.around(instrumented())

        app.build_middleware_stack = build_middleware_stack   # type: ignore[method-assign]


class UnsampledFastPath:
    """On top of the stack the FastAPI instrumentation builds (`around`): a request the head
    sampler drops (99 % of new traces in production, and any request whose caller's
    traceparent says unsampled) gets the span the SDK would give it, a NonRecordingSpan with
    real ids (tracing.head_decision), and goes straight to the app's own stack (its error
    middleware and handler, then its middlewares: what telemetry off runs). The
    instrumentation's per-request work (request attributes, span name from
    the route table, send/receive wrappers, metrics on a no-op meter) is only there for a
    span that records; what the request shows is the same: X-Trace-Id, log lines' trace id,
    the trace context in the Temporal headers (the workflow's activities keep the trace id).
    A recorded request, a probe and a scrape (excluded URLs) take the instrumentation's path."""

    def __init__(self, instrumented: ASGIApp, inner: ASGIApp, excluded: Any) -> None:
        # `app`: FastAPI looks down the stack's `.app` chain for the instrumentation's
        # middleware and, finding it, leaves its own (native) telemetry off.
        self.app = self.instrumented = instrumented
        self.inner = inner
        # Whether a path is excluded (probes, /metrics): the ExcludeList's own test, with its
        # compiled pattern's `search` called directly (`url_disabled` goes through re.search).
        pattern = getattr(excluded, "_regex", None)
        self.disabled: Callable[[str], Any] | None = (
            None if not excluded else pattern.search if isinstance(pattern, re.Pattern)
            and getattr(excluded, "_excluded_urls", None) else excluded.url_disabled)
        # The header names the process's propagator reads (traceparent, tracestate, baggage).
        self.fields = frozenset(name.lower().encode("latin-1")
                                for name in propagate.get_global_textmap().fields)

    @classmethod
    def around(cls, stack: ASGIApp) -> ASGIApp:
        """`stack` as the instrumentation builds it: ServerErrorMiddleware (no handler) around
        OpenTelemetryMiddleware around ServerErrorMiddleware (the app's handler) around its
        ExceptionHandlerMiddleware (records an exception on the span) around the app's own
        middlewares. The fast path goes on top; a request it takes runs the app's handler's
        ServerErrorMiddleware around the app's own middlewares, i.e. the stack telemetry off
        runs: the outer error middleware (there for errors of OpenTelemetryMiddleware) and the
        exception recorder (its span does not record) are per-request layers with nothing to do
        for it. `stack` unchanged if its shape is not that one."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from starlette.middleware.errors import ServerErrorMiddleware

        middleware = getattr(stack, "app", None)
        if not isinstance(middleware, OpenTelemetryMiddleware):
            return stack
        inner = errors = middleware.app
        recorder = getattr(errors, "app", None)
        if (isinstance(errors, ServerErrorMiddleware)
                and type(recorder).__name__ == "ExceptionHandlerMiddleware"
                and getattr(recorder, "app", None) is not None):
            inner = ServerErrorMiddleware(recorder.app, handler=errors.handler,
                                          debug=errors.debug)
        return cls(stack, inner, middleware.excluded_urls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.disabled is not None
                                       and self.disabled(scope.get("path", ""))):
            await self.instrumented(scope, receive, send)
            return
        # The caller's trace context, if its headers carry any (else an empty context, as the
        # propagator's own answer would be, without decoding every header name thrice).
        # (The header names as a dict's keys: compared in C, no generator step per header.)
        parent = (otel_context.Context() if self.fields.isdisjoint(dict(scope["headers"]))
                  else propagate.extract(scope, getter=asgi_getter))
        span = tracing.head_decision(parent)
        if span is None:   # recorded: the instrumentation starts the span (same trace id)
            await self.instrumented(scope, receive, send)
            return
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.inner(scope, receive, send)
        finally:
            otel_context.detach(token)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value.decode("latin-1") for name, value in scope["headers"]
                         if name == REQUEST_ID_HEADER.encode()), "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        logs.bind_request(request_id)
        trace_id = logs.trace_id()
        status = 500   # an exception escaping the app is answered 500 by the server

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if trace_id:
                    headers[TRACE_ID_HEADER] = trace_id
            await send(message)

        recorded = metrics.enabled()
        if recorded:
            metrics.HTTP_REQUESTS_IN_FLIGHT.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            seconds = time.perf_counter() - start
            method, route = scope["method"], _route(scope)
            if recorded:   # label children bound once (metrics.child): no lock, no tuple
                label = method if method in METHODS else OTHER_METHOD   # a bounded set
                metrics.child(metrics.HTTP_REQUESTS, label, route,
                              metrics.status_class(status)).inc()
                metrics.latency(metrics.HTTP_REQUEST_SECONDS, label, route).observe(seconds)
                # last: a scrape seeing no other request in flight sees every one counted
                metrics.HTTP_REQUESTS_IN_FLIGHT.dec()
            if route not in QUIET_ROUTES:
                log.info("request", extra={"method": method, "route": route, "status": status,
                                           "duration_ms": round(seconds * 1000, 2)})
