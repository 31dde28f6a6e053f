"""OpenTelemetry tracing: the tracer provider, its exporter, the library instrumentations.

    tracing.configure(settings, "settlepay-worker")   # once per process (observability.setup)

One connected trace per business operation: the API's span (FastAPI instrumentation, api/app.py)
-> the Temporal client's StartWorkflow / SignalWorkflow / UpdateWorkflow span (the
TracingInterceptor of settlepay/temporal.py, carried in Temporal headers) -> RunWorkflow ->
StartActivity -> RunActivity on the worker -> SQL spans (psycopg, every connection: SQLAlchemy's
and psycopg_pool's both open through the patched `Connection.connect`) and outgoing HTTP spans
(requests: the Stripe SDK's client; httpx: the KYC and notification adapters and partner
webhooks).

The exporter is configuration (`SETTLEPAY_TRACES_EXPORTER`): "none" keeps real trace ids for
logs and Temporal headers but ships nothing; "otlp" batches to the collector at
`SETTLEPAY_OTLP_ENDPOINT`; "console" prints each span (debugging). Statement parameters and
request bodies are never recorded on spans.
"""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from temporalio.contrib.opentelemetry import TracingInterceptor

from settlepay.config import Settings

EXPORTERS = ("none", "otlp", "console")

_lock = threading.Lock()
_instrumented = False


def span_processor(settings: Settings) -> SpanProcessor | None:
    """The processor shipping finished spans where the settings say; None for "none"."""
    kind = settings.traces_exporter.lower()
    if kind not in EXPORTERS:
        raise ValueError(f"SETTLEPAY_TRACES_EXPORTER must be one of {EXPORTERS}, not {kind!r}")
    if kind == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    return None


def configure(settings: Settings, service: str, *,
              exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install the process's tracer provider (once: OpenTelemetry refuses a second, so a later
    call adds its processors to the first) and the library instrumentations. `exporter`: an
    extra exporter, e.g. an in-memory one in tests.
    Telemetry off: nothing is installed and spans stay no-ops."""
    if not settings.telemetry_enabled:
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):   # set up before in this process: add to it
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        trace.set_tracer_provider(provider)
    processor = span_processor(settings)
    if processor is not None:
        provider.add_span_processor(processor)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_libraries()
    return provider


def instrument_libraries() -> None:
    """psycopg, httpx and requests spans, process-wide; idempotent."""
    global _instrumented
    with _lock:
        if _instrumented:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        PsycopgInstrumentor().instrument(skip_dep_check=True)
        HTTPXClientInstrumentor().instrument()
        RequestsInstrumentor().instrument()
        _instrumented = True


def interceptors(settings: Settings) -> list[TracingInterceptor]:
    """Temporal interceptors of a client (workers made from the client inherit them)."""
    return [TracingInterceptor()] if settings.telemetry_enabled else []
