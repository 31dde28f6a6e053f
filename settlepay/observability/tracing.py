"""OpenTelemetry tracing: the tracer provider, its exporter, the library instrumentations.

    tracing.configure(settings, "settlepay-worker")   # once per process (observability.setup)

One connected trace per business operation: the API's span (FastAPI instrumentation, api/app.py)
-> the Temporal client's StartWorkflow / SignalWorkflow / UpdateWorkflow span (the
TracingInterceptor of settlepay/temporal.py, carried in Temporal headers) -> RunWorkflow ->
StartActivity -> RunActivity on the worker -> SQL spans (psycopg, every connection: SQLAlchemy's
and psycopg_pool's both open through the patched `Connection.connect`) and outgoing HTTP spans
(requests: the Stripe SDK's client; httpx: the KYC and notification adapters and partner
webhooks). A later request about the same operation (Stripe's webhook for a deposit, the
withdrawal's second factor) continues that trace: the creating request's traceparent rides in
the workflow's memo (`memo`, api/workflow_start.py) and the later request's handling span is
its child, linked to the later request's own trace (`continuing`).

Sampling (`SETTLEPAY_TRACES_SAMPLE_RATIO`, `HeadSampler`): production records 1 % of the new
traces, whole (every span of a recorded trace, SQL included), and follows the caller's decision
for a continued one; `make dev` and the tests record every trace. An unsampled operation keeps
its trace id in its log lines and headers, and its problem answers are logged (with that id)
and counted as every one is: what sampling drops is the span tree, not the error. Its SQL
makes no span at all (`ChildSpansOnly`): a statement is traced only inside a recorded trace.
Likewise a request the sampler drops skips the FastAPI instrumentation's per-request work
(`head_decision`, api/telemetry.py UnsampledFastPath) and a workflow of an unsampled trace
makes none of its (non-recording) workflow spans (`WorkflowTracing`); both keep the trace ids.
bench/observability.py measures this default against telemetry off.

The exporter is configuration (`SETTLEPAY_TRACES_EXPORTER`): "none" keeps real trace ids for
logs and Temporal headers but ships nothing; "otlp" batches to the collector at
`SETTLEPAY_OTLP_ENDPOINT`; "console" prints each span (debugging). Statement parameters and
request bodies are never recorded on spans.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from temporalio import workflow as temporal_workflow
from temporalio.client import WorkflowHandle
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._context import attached_context
from temporalio.service import RPCError
from temporalio.worker import WorkflowInterceptorClassInput

from settlepay.config import Settings

EXPORTERS = ("none", "otlp", "console")

_lock = threading.Lock()
_instrumented = False


class HeadSampler(Sampler):
    """ParentBased(TraceIdRatioBased(ratio)): a new trace is recorded with probability `ratio`
    (decided from its trace id, so every process agrees), a span with a parent follows its
    parent's decision (carried in traceparent / Temporal headers). An unsampled span is a
    NonRecordingSpan: it has real ids (logs and headers carry them) and costs no attributes,
    no processor and no export. The ratio is the process's: set by the first `configure`, or
    by one given an in-memory exporter (tests record every trace)."""

    def __init__(self, ratio: float) -> None:
        self.set_ratio(ratio)

    def set_ratio(self, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"SETTLEPAY_TRACES_SAMPLE_RATIO must be within [0, 1], not {ratio}")
        self.ratio = ratio
        self._bound = TraceIdRatioBased.get_bound_for_rate(ratio)
        self._sampler = ParentBased(TraceIdRatioBased(ratio))

    def keeps(self, parent: trace.SpanContext, trace_id: int) -> bool:
        """`should_sample`'s decision without building its result: a valid parent's flag, else
        TraceIdRatioBased's test on the new trace id (the same bound)."""
        if parent.is_valid:
            return parent.trace_flags.sampled
        return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self._bound

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return self._sampler.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return self._sampler.get_description()


# The trace id of a new trace the request fast path (`head_decision`) decided to record: the
# next root span started in this context takes it, so the SDK's decision is the same one.
_decided_trace_id: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "settlepay_decided_trace_id", default=None)


class IdGenerator(RandomIdGenerator):
    """Random ids (the SDK's), except the trace id `head_decision` drew for a root span it
    found sampled: the span the instrumentation then starts has that id, hence the decision
    made on it (TraceIdRatioBased decides from the trace id)."""

    def generate_trace_id(self) -> int:
        decided = _decided_trace_id.get()
        if decided:
            return decided.pop()
        return super().generate_trace_id()


def head_decision(parent: otel_context.Context) -> trace.Span | None:
    """The process's head-sampling decision for a span about to start under `parent` (an
    incoming request's extracted context), before anything is computed for it: the
    NonRecordingSpan the SDK would give it when the HeadSampler drops it (real ids: the
    parent's trace id or a new one, a new span id, unsampled flags, the parent's trace state),
    or None when it is recorded; then, for a new trace, the next root span started in this
    context gets the trace id decided on (`IdGenerator`). Also None (decide as usual) when the
    provider is not this module's (HeadSampler and IdGenerator), e.g. telemetry off."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None
    sampler, ids = provider.sampler, provider.id_generator
    if not isinstance(sampler, HeadSampler) or not isinstance(ids, IdGenerator):
        return None
    parent_context = trace.get_current_span(parent).get_span_context()
    new_trace = not parent_context.is_valid
    trace_id = ids.generate_trace_id() if new_trace else parent_context.trace_id
    if sampler.keeps(parent_context, trace_id):
        if new_trace:
            _decided_trace_id.set([trace_id])
        return None
    random_id = (ids.is_trace_id_random() if new_trace
                 else parent_context.trace_flags.random_trace_id)
    flags = trace.TraceFlags(trace.TraceFlags.RANDOM_TRACE_ID if random_id
                             else trace.TraceFlags.DEFAULT)
    return trace.NonRecordingSpan(trace.SpanContext(
        trace_id, ids.generate_span_id(), is_remote=False, trace_flags=flags,
        trace_state=None if new_trace else parent_context.trace_state))


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
    Telemetry off: nothing is installed and spans stay no-ops.
    Sampling (`traces_sample_ratio`): the first call's, or the one given `exporter` (a test's
    recorder pins the ratio it asks for, 1.0, whatever a later set-up of the process says)."""
    if not settings.telemetry_enabled:
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):   # set up before in this process: add to it
        provider = current
        if exporter is not None and isinstance(provider.sampler, HeadSampler):
            provider.sampler.set_ratio(settings.traces_sample_ratio)
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                  sampler=HeadSampler(settings.traces_sample_ratio),
                                  id_generator=IdGenerator())
        trace.set_tracer_provider(provider)
    processor = span_processor(settings)
    if processor is not None:
        provider.add_span_processor(processor)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_libraries()
    return provider


class _NoSpan:
    """What an SQL statement outside a recorded trace gets: the invalid span, no context
    switch (the instrumentation then skips attributes, as for any non-recording span)."""

    __slots__ = ()

    def __enter__(self) -> trace.Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


class _ChildTracer(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Any = None, *args: Any,
                   **kwargs: Any) -> trace.Span:
        if not trace.get_current_span(context).is_recording():
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    def start_as_current_span(self, name: str, context: Any = None, *args: Any,
                              **kwargs: Any) -> Any:
        if not trace.get_current_span(context).is_recording():
            return _NO_SPAN
        return self._tracer.start_as_current_span(name, context, *args, **kwargs)


class ChildSpansOnly(trace.TracerProvider):
    """Tracers that make a span only inside a recorded span: SQL statements are spans of the
    operation that runs them (an activity, a request, a CLI command) when that operation's
    trace is sampled; a statement of a sampled-out trace, or of no operation at all (a pool's
    ping, a scrape's query), costs one look at the current span instead of a root span, a
    sampling decision and a context switch per statement."""

    _TRACERS_MAX = 64

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider
        self._tracers: dict[Any, trace.Tracer] = {}

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        """The tracer of these arguments, made once: the psycopg instrumentation asks for its
        tracer (the same name, version and schema) at every new connection, and the SDK makes
        a new Tracer and InstrumentationScope each time (~10 us; a pool's overflow connections
        come and go under load)."""
        try:
            key = (args, tuple(sorted(kwargs.items())))
            found = self._tracers.get(key)
        except TypeError:   # an unhashable argument (attributes): not kept
            return _ChildTracer(self._provider.get_tracer(*args, **kwargs))
        if found is None:
            found = _ChildTracer(self._provider.get_tracer(*args, **kwargs))
            if len(self._tracers) < self._TRACERS_MAX:
                self._tracers[key] = found
        return found


def recording() -> bool:
    """Whether the current span records (a span of a sampled trace): `get_current_span()
    .is_recording()` with one read of OpenTelemetry's context variable instead of four calls
    (the SQL and Temporal fast paths ask it for every statement and activity)."""
    span = _current_context().get(_SPAN_KEY)
    return span is not None and span.is_recording()


def _context_reader() -> Any:
    """The current OpenTelemetry Context: the runtime context's ContextVar read directly when
    the runtime is the SDK's default (contextvars), else `otel_context.get_current`."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(runtime, ContextVarsRuntimeContext) and isinstance(
            variable, contextvars.ContextVar):
        return variable.get
    return otel_context.get_current


_current_context = _context_reader()


# psycopg's Cursor.execute / executemany parameters (name, kind, default), as of psycopg 3.1-3.3:
# the fast path below repeats them; another signature takes the *args / **kwargs version.
_EXECUTE = (("self", "POSITIONAL_OR_KEYWORD", "-"), ("query", "POSITIONAL_OR_KEYWORD", "-"),
            ("params", "POSITIONAL_OR_KEYWORD", None), ("prepare", "KEYWORD_ONLY", None),
            ("binary", "KEYWORD_ONLY", None))
_EXECUTEMANY = (("self", "POSITIONAL_OR_KEYWORD", "-"), ("query", "POSITIONAL_OR_KEYWORD", "-"),
                ("params_seq", "POSITIONAL_OR_KEYWORD", "-"),
                ("returning", "KEYWORD_ONLY", False))


def _parameters(function: Any) -> tuple[tuple[str, str, Any], ...]:
    """(name, kind, default or "-") of each parameter of `function`."""
    import inspect

    return tuple((p.name, p.kind.name, "-" if p.default is inspect.Parameter.empty
                  else p.default) for p in inspect.signature(function).parameters.values())


def _fast_path_outside_recorded_traces() -> None:
    """The psycopg instrumentation's cursors run every statement through
    `CursorTracer.traced_execution`, which names the operation (a regular expression), asks
    for a span and times the statement before looking at the span. Outside a recorded trace
    (most statements under sampling) that is ~8 us a statement for nothing. Two layers:
    the cursor class the instrumentation makes for each connection (`_new_cursor_factory`)
    gets a subclass whose execute / executemany look at the current span first and, outside a
    recorded trace, call the base cursor's method straight away (no bound `super()` method
    and tracer frame per statement); and the module's `CursorTracer` (the async cursors, and
    the recorded path) runs the statement at once outside a recorded trace too. If a later
    version stops making the classes so, the statements keep the library's path
    (ChildSpansOnly still keeps them out of traces)."""
    from opentelemetry.instrumentation import psycopg as instrumentation

    library = instrumentation.CursorTracer
    if getattr(library, "settlepay_fast_path", False):
        return
    current_span = trace.get_current_span

    class CursorTracer(library):   # type: ignore[misc,valid-type]
        settlepay_fast_path = True

        def traced_execution(self, cursor: Any, query_method: Any, *args: Any,
                             **kwargs: Any) -> Any:
            if not current_span().is_recording():
                return query_method(*args, **kwargs)
            return super().traced_execution(cursor, query_method, *args, **kwargs)

        async def traced_execution_async(self, cursor: Any, query_method: Any, *args: Any,
                                         **kwargs: Any) -> Any:
            if not current_span().is_recording():
                return await query_method(*args, **kwargs)
            return await super().traced_execution_async(cursor, query_method, *args, **kwargs)

    instrumentation.CursorTracer = CursorTracer

    library_factory = instrumentation._new_cursor_factory

    def _new_cursor_factory(*args: Any, **kwargs: Any) -> Any:
        traced = library_factory(*args, **kwargs)
        base = traced.__mro__[1]   # the connection's own cursor class (psycopg.Cursor)
        base_execute, base_executemany = base.execute, base.executemany
        traced_execute, traced_executemany = traced.execute, traced.executemany

        if _parameters(base_execute) == _EXECUTE and _parameters(
                base_executemany) == _EXECUTEMANY:
            class TracedCursorFactory(traced):   # type: ignore[misc,valid-type]  # name checked
                # The base methods' own parameters: a call passes them on as they came, with no
                # tuple and dict of *args / **kwargs to build per statement.
                def execute(self, query: Any, params: Any = None, *, prepare: Any = None,
                            binary: Any = None) -> Any:
                    if recording():
                        return traced_execute(self, query, params, prepare=prepare,
                                              binary=binary)
                    return base_execute(self, query, params, prepare=prepare, binary=binary)

                def executemany(self, query: Any, params_seq: Any, *,
                                returning: Any = False) -> Any:
                    if recording():
                        return traced_executemany(self, query, params_seq, returning=returning)
                    return base_executemany(self, query, params_seq, returning=returning)

            return TracedCursorFactory

        class TracedCursorFactory(traced):   # type: ignore[misc,valid-type,no-redef]
            def execute(self, *args: Any, **kwargs: Any) -> Any:
                if recording():
                    return traced_execute(self, *args, **kwargs)
                return base_execute(self, *args, **kwargs)

            def executemany(self, *args: Any, **kwargs: Any) -> Any:
                if recording():
                    return traced_executemany(self, *args, **kwargs)
                return base_executemany(self, *args, **kwargs)

        return TracedCursorFactory

    instrumentation._new_cursor_factory = _new_cursor_factory


def _fast_path_requests_outside_recorded_traces() -> None:
    """The requests instrumentation (the Stripe SDK's client) computes a client span's
    attributes, parses the URL, patches the next connection and records its metrics for every
    call. Under an unsampled parent that span records nothing: the call only needs the trace
    context in its headers (the parent's: same trace id and decision), then the library's own
    `Session.send`. A recorded trace, or a call outside any trace (it may start a sampled
    one), keeps the instrumentation's path; so does a call the caller suppressed."""
    import functools

    from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
    from opentelemetry.propagate import inject
    from requests.sessions import Session

    instrumented = Session.send
    original = getattr(instrumented, "__wrapped__", None)
    if original is None or getattr(instrumented, "settlepay_fast_path", False):
        return
    current_span = trace.get_current_span

    @functools.wraps(instrumented)
    def send(self: Session, request: Any, **kwargs: Any) -> Any:
        parent = current_span().get_span_context()
        if (parent.is_valid and not parent.trace_flags.sampled
                and request.headers is not None and is_http_instrumentation_enabled()):
            inject(request.headers)
            return original(self, request, **kwargs)
        return instrumented(self, request, **kwargs)

    send.__wrapped__ = original   # type: ignore[attr-defined]  # what uninstrument restores
    send.settlepay_fast_path = True   # type: ignore[attr-defined]
    Session.send = send   # type: ignore[method-assign]


def _instrument_connections_opened_before(tracers: trace.TracerProvider) -> None:
    """The instrumentation wraps `connect`, so a pooled connection opened before it (an engine
    made before `setup`, e.g. a test's) would never make a span: instrument such a connection
    at its first checkout (one look at the pool record's info on later ones)."""
    import psycopg
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if "settlepay_traced" in record.info:
            return
        record.info["settlepay_traced"] = True
        factory = getattr(dbapi_connection, "cursor_factory", None)
        if isinstance(dbapi_connection, psycopg.Connection) and not getattr(
                factory, "__name__", "").startswith("Traced"):
            PsycopgInstrumentor.instrument_connection(dbapi_connection, tracer_provider=tracers)

    event.listen(Pool, "checkout", checkout)


def instrument_libraries() -> None:
    """psycopg (inside recorded traces only: ChildSpansOnly), httpx and requests spans,
    process-wide; idempotent."""
    global _instrumented
    with _lock:
        if _instrumented:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        _fast_path_outside_recorded_traces()
        sql_tracers = ChildSpansOnly(trace.get_tracer_provider())
        PsycopgInstrumentor().instrument(skip_dep_check=True, tracer_provider=sql_tracers)
        _instrument_connections_opened_before(sql_tracers)
        HTTPXClientInstrumentor().instrument()
        RequestsInstrumentor().instrument()
        _fast_path_requests_outside_recorded_traces()
        _instrumented = True


# --- an operation's trace, continued by a later request --------------------------------------

# The memo entry of a money workflow (deposit, withdrawal) holding the W3C traceparent of the
# request that created it.
TRACEPARENT = "traceparent"
_propagator = TraceContextTextMapPropagator()
_DESCRIBE_TIMEOUT = timedelta(seconds=2)   # past it, the request goes on in its own trace
_tracer = trace.get_tracer("settlepay.operations")


def memo() -> dict[str, str] | None:
    """The Temporal memo that carries the operation's trace: {"traceparent": ...} of the
    current span (the creating request's), or None when there is no trace (telemetry off)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return {TRACEPARENT: carrier[TRACEPARENT]} if TRACEPARENT in carrier else None


async def operation_traceparent(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The traceparent stored in the memo of `handle`'s workflow (one Describe call), or None:
    telemetry off, a workflow started without one, or Temporal not answering (the caller's own
    call then says what is wrong)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    try:
        described = await handle.describe(rpc_timeout=_DESCRIBE_TIMEOUT)
        value = await described.memo_value(TRACEPARENT, None)
    except (RPCError, TypeError, ValueError):
        return None
    return value if isinstance(value, str) else None


@contextmanager
def continuing(name: str, traceparent: str | None) -> Iterator[trace.Span]:
    """A span in the business operation's trace: a child of the stored `traceparent` (the
    request that created the deposit or withdrawal), linked to the current span (the incoming
    request's own trace, e.g. Stripe's webhook or the second-factor POST). Without a stored
    traceparent, a child of the current span. What runs inside (the Temporal signal or Update,
    its SQL) joins the operation's trace; the operation's sampling decision holds."""
    current = trace.get_current_span().get_span_context()
    if traceparent is None:
        with _tracer.start_as_current_span(name) as span:
            yield span
        return
    parent = _propagator.extract({TRACEPARENT: traceparent})
    dropped = head_decision(parent)
    if dropped is not None:
        # The operation's trace is not recorded (its creating request was dropped by the head
        # sampler, as 99 % are): the span the SDK would make under it, made as the request's
        # fast path makes its own (head_decision: its ids, flags and trace state), current
        # in the current context as start_as_current_span leaves it; a NonRecordingSpan
        # keeps no name, link, status or exception, and ending it does nothing.
        token = otel_context.attach(trace.set_span_in_context(dropped))
        try:
            yield dropped
        finally:
            otel_context.detach(token)
        return
    links = [trace.Link(current)] if current.is_valid else None
    with _tracer.start_as_current_span(name, context=parent, links=links) as span:
        yield span


class _SameContextHeader:
    """`_context_to_headers` that serializes the current context once: the header payload made
    for a Context object is reused while that same object is current. Under an unsampled
    parent no span is made, so a workflow's StartActivity calls (and an activity's client
    calls) all run in one Context: one inject and one JSON payload instead of one each. The
    Context is immutable (a new span or value makes a new one), so the same object means the
    same traceparent, tracestate and baggage."""

    header_key: str
    _made_for: tuple[Any, Any] | None = None   # (Context, its header payload)

    def _context_to_headers(self, headers: Any) -> Any:
        current = _current_context()
        made = self._made_for
        if made is None or made[0] is not current:
            carried = super()._context_to_headers({})   # type: ignore[misc]
            made = self._made_for = (current, carried.get(self.header_key))
        if made[1] is None:   # no trace context to carry (the library adds nothing then)
            return headers
        return {**headers, self.header_key: made[1]}


class WorkflowTracing(_SameContextHeader, TracingWorkflowInboundInterceptor):
    """The TracingInterceptor's workflow side, without its per-span work in a trace that is
    not recorded. Each workflow span (RunWorkflow, StartActivity, HandleSignal, ...) is made
    by a call out of the sandbox that extracts the context, starts and ends a span and
    injects it back; under an unsampled parent (the API's request dropped by the head
    sampler: 99 % in production) that span is a NonRecordingSpan that nothing records. Here
    such a span is not made: the current (unsampled) context goes on in the outbound headers
    as it is, so the activities keep the operation's trace id (their log lines carry it) and
    follow its decision. A recorded trace, and a span with no parent, take the library's path
    (every span of the tree)."""

    def _completed_span(self, span_name: str, *, add_to_outbound: Any = None,
                        new_span_even_on_replay: bool = False, **kwargs: Any) -> None:
        parent = trace.get_current_span().get_span_context()
        if (parent.is_valid and not parent.trace_flags.sampled
                and kwargs.get("add_to_outbound_str") is None
                and kwargs.get("add_to_outbound_model") is None):
            if temporal_workflow.unsafe.is_replaying() and not new_span_even_on_replay:
                return   # as the library: nothing on replay
            if add_to_outbound is not None:
                add_to_outbound.headers = self._context_to_headers(add_to_outbound.headers)
            return
        super()._completed_span(span_name, add_to_outbound=add_to_outbound,
                                new_span_even_on_replay=new_span_even_on_replay, **kwargs)


class Tracing(_SameContextHeader, TracingInterceptor):
    """temporalio's TracingInterceptor (client, activities, workflows) with `WorkflowTracing`
    as its workflow side. Its client spans (StartWorkflow, SignalWorkflow, ...) and activity
    spans (RunActivity) are likewise not made under an unsampled parent: the parent's context
    is what the call's headers carry and what the activity runs in (same trace id and
    decision; its log lines name the parent's span id)."""

    _HEADER_CONTEXTS_MAX = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_contexts: dict[bytes, otel_context.Context] = {}

    def _context_from_headers(self, headers: Any) -> otel_context.Context | None:
        """The context an activity runs in, from its Temporal header: the library's (payload
        decoded, then the propagator's extract), kept by the header's bytes, so the other
        activities of an operation (the same header under an unsampled parent) take it from
        here. A Context is immutable; at most _HEADER_CONTEXTS_MAX are kept (all dropped when
        full)."""
        payload = headers.get(self.header_key) if headers else None
        if not payload:
            return super()._context_from_headers(headers)
        key = payload.SerializeToString()
        found = self._header_contexts.get(key)
        if found is None:
            found = super()._context_from_headers(headers)
            if found is None:
                return None
            if len(self._header_contexts) >= self._HEADER_CONTEXTS_MAX:
                self._header_contexts.clear()
            self._header_contexts[key] = found
        return found

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)
        return WorkflowTracing

    @contextmanager
    def _start_as_current_span(self, name: str, *, attributes: Any,
                               input_with_headers: Any = None, input_with_ctx: Any = None,
                               kind: trace.SpanKind, context: Any = None) -> Iterator[None]:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid and not parent.trace_flags.sampled and input_with_ctx is None:
            with attached_context(context):
                if input_with_headers is not None:
                    input_with_headers.headers = self._context_to_headers(
                        input_with_headers.headers)
                yield None
            return
        with super()._start_as_current_span(
                name, attributes=attributes, input_with_headers=input_with_headers,
                input_with_ctx=input_with_ctx, kind=kind, context=context):
            yield None


def interceptors(settings: Settings) -> list[TracingInterceptor]:
    """Temporal interceptors of a client (workers made from the client inherit them)."""
    return [Tracing()] if settings.telemetry_enabled else []
