"""Observability under test: spans kept in memory, log lines captured as the processes write
them, and the worker process (workers/main.py) running with its /metrics endpoint.

- `span_recorder` (session): installs the process's tracer provider ONCE (OpenTelemetry takes
  one per process) with an in-memory exporter and the psycopg / httpx / requests
  instrumentations; it records only while a test holds it (`recording()`), so later tests do
  not fill memory.
- `captured_logs()`: every log record of the process rendered by the JSON formatter the
  processes use (settlepay/observability/logs.py), redaction included.
- `running_worker(...)`: the real worker entrypoint (`workers.main.run`: Temporal client with
  the tracing interceptor, SDK metrics runtime, /metrics on a free port).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from settlepay.config import Settings
from settlepay.observability import logs, tracing
from tests.support.net import free_port
from workers import main as worker_main


class SpanRecorder(SpanExporter):
    """Finished spans, kept while recording."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []
        self._on = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._on:
                self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    @contextmanager
    def recording(self) -> Iterator[SpanRecorder]:
        with self._lock:
            self._spans, self._on = [], True
        try:
            yield self
        finally:
            with self._lock:
                self._spans, self._on = [], False

    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)

    def trace_of(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.context.trace_id == span.context.trace_id]


_recorder: SpanRecorder | None = None


@pytest.fixture(scope="session")
def span_recorder(settings: Settings) -> SpanRecorder:
    global _recorder
    if _recorder is None:
        _recorder = SpanRecorder()
        # Every trace recorded (production samples 1 %): the tests assert whole span trees.
        provider = tracing.configure(
            settings.model_copy(update={"traces_exporter": "none", "traces_sample_ratio": 1.0}),
            "settlepay-tests", exporter=_recorder)
        assert provider is not None and trace.get_tracer_provider() is provider, (
            "another tracer provider was installed first")
        assert isinstance(provider, TracerProvider)
    return _recorder


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def lines(self) -> list[str]:
        return [line for line in self._stream.getvalue().splitlines() if line]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[CapturedLogs]:
    """Every record the process logs meanwhile, as the JSON lines its handler would write."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    logs.temporal_details_as_fields()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield CapturedLogs(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Settings]:
    """The worker process's `run` in this event loop, its /metrics on a free port; yields the
    settings it runs with (worker_metrics_port set)."""
    settings = settings.model_copy(update={"worker_metrics_port": free_port(),
                                           "worker_db_pool_size": 3,
                                           "worker_activity_threads": 8,
                                           "worker_graceful_shutdown_seconds": 2.0})
    stop = asyncio.Event()
    running = asyncio.create_task(worker_main.run(settings, stop))
    try:
        yield settings
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


# --- the span tree ------------------------------------------------------------------------------

def spans_by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """`span`'s parent, grandparent, ... as far as `index` holds them."""
    chain = []
    while span.parent is not None and span.parent.span_id in index:
        span = index[span.parent.span_id]
        chain.append(span)
    return chain
