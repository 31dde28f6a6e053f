"""Tracing set-up: SQL spans from every kind of psycopg connection (psycopg_pool's, and a
pooled one opened before the instrumentation), only inside a recorded trace; head sampling."""

from __future__ import annotations

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from psycopg_pool import ConnectionPool
from sqlalchemy import text

from settlepay.config import Settings
from settlepay.db import make_engine
from settlepay.observability import tracing
from tests.support.databases import sqlalchemy_url


def test_connections_from_psycopg_pool_and_sqlalchemy_make_sql_spans(database_url, engine,
                                                                       recorder):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("pooled") as parent:
        with ConnectionPool(database_url, min_size=1, max_size=1, open=True) as pool:
            with pool.connection() as conn:
                conn.execute("SELECT 1 AS pooled")
    with tracer.start_as_current_span("sqlalchemy") as other:
        engine.dispose()   # a new connection, opened through the instrumented connect
        with engine.connect() as conn:
            conn.execute(text("SELECT 2 AS through_sqlalchemy"))

    def children(span: trace.Span) -> list[str]:
        return [str((s.attributes or {}).get("db.statement") or
                    (s.attributes or {}).get("db.query.text"))
                for s in recorder.spans()
                if s.parent is not None and s.parent.span_id == span.get_span_context().span_id]

    assert any("SELECT 1 AS pooled" in statement for statement in children(parent))
    assert any("SELECT 2 AS through_sqlalchemy" in statement for statement in children(other))


def _statements(recorder) -> list[str]:
    return [str((s.attributes or {}).get("db.statement") or
                (s.attributes or {}).get("db.query.text")) for s in recorder.spans()]


def test_head_sampling_records_the_ratio_of_new_traces_and_follows_a_parent_decision():
    provider = TracerProvider(sampler=tracing.HeadSampler(0.0))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("new trace, sampled out") as dropped:
        # Real ids for logs and headers, nothing recorded.
        assert dropped.get_span_context().is_valid and not dropped.is_recording()
    sampled_parent = SpanContext(trace_id=0x1234, span_id=0x99, is_remote=True,
                                 trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span("continued", context=set_span_in_context(
            NonRecordingSpan(sampled_parent))) as continued:
        assert continued.is_recording()     # the caller recorded its trace: so do we
        assert continued.get_span_context().trace_id == 0x1234
    provider.sampler.set_ratio(1.0)
    with tracer.start_as_current_span("new trace, sampled in") as kept:
        assert kept.is_recording()
    with pytest.raises(ValueError):
        tracing.HeadSampler(1.5)
    assert Settings().traces_sample_ratio == 0.01       # production's default


def test_sql_makes_spans_only_inside_a_recorded_trace(engine, recorder):
    unsampled = SpanContext(trace_id=0x4321, span_id=0x77, is_remote=False,
                            trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with engine.connect() as conn:
        conn.execute(text("SELECT 3 AS outside_any_trace"))
        with trace.use_span(NonRecordingSpan(unsampled)):
            conn.execute(text("SELECT 4 AS in_a_sampled_out_trace"))
        with trace.get_tracer("tests").start_as_current_span("recorded"):
            conn.execute(text("SELECT 5 AS in_a_recorded_trace"))
    statements = _statements(recorder)
    assert not any("outside_any_trace" in s or "sampled_out" in s for s in statements)
    assert any("SELECT 5 AS in_a_recorded_trace" in s for s in statements), statements


def test_a_statement_outside_a_recorded_trace_goes_straight_to_the_cursor(engine, recorder,
                                                                          monkeypatch):
    """Outside a recorded trace a statement (execute and executemany) is the base cursor's
    call: the instrumentation's tracer is not entered; inside one it is, once a statement,
    and makes the span."""
    from opentelemetry.instrumentation import psycopg as instrumentation

    entered: list[str] = []
    library = instrumentation.CursorTracer.traced_execution

    def counted(self, cursor, query_method, *args, **kwargs):
        entered.append(str(args[0]))
        return library(self, cursor, query_method, *args, **kwargs)

    monkeypatch.setattr(instrumentation.CursorTracer, "traced_execution", counted)
    unsampled = SpanContext(trace_id=0x5432, span_id=0x88, is_remote=False,
                            trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw.cursor_factory.__name__.startswith("Traced")
        with trace.use_span(NonRecordingSpan(unsampled)), raw.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE fast_path (n int)")
            cursor.executemany("INSERT INTO fast_path VALUES (%s)", [(1,), (2,), (3,)])
            cursor.execute("SELECT sum(n) AS in_a_sampled_out_trace FROM fast_path")
            assert cursor.fetchone() == (6,)
        assert entered == []
        with trace.get_tracer("tests").start_as_current_span("recorded"), \
                raw.cursor() as cursor:
            cursor.execute("SELECT 7 AS recorded_once")
            assert cursor.fetchone() == (7,)
        conn.rollback()
    assert entered == ["SELECT 7 AS recorded_once"]
    statements = _statements(recorder)
    assert any("SELECT 7 AS recorded_once" in s for s in statements), statements
    assert not any("fast_path" in s for s in statements)


def test_temporal_headers_carry_the_current_context_and_give_it_back_to_activities():
    """The interceptor's header of a context is made once per Context object and an activity's
    context taken once per header: each call still carries the context current at that call
    (never a previous one), and reads back the traceparent it was given."""
    from opentelemetry import context as otel_context

    interceptor = tracing.Tracing()

    def span_context(trace_id: int, span_id: int) -> SpanContext:
        return SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False,
                           trace_flags=TraceFlags(TraceFlags.DEFAULT))

    first, second = span_context(0x1111, 0x21), span_context(0x2222, 0x42)
    headers = {}
    for parent in (first, first, second, first):
        token = otel_context.attach(set_span_in_context(NonRecordingSpan(parent)))
        try:
            made = interceptor._context_to_headers({"other": "kept"})
        finally:
            otel_context.detach(token)
        assert made["other"] == "kept"
        extracted = trace.get_current_span(interceptor._context_from_headers(made))
        assert extracted.get_span_context().trace_id == parent.trace_id
        assert extracted.get_span_context().span_id == parent.span_id
        assert not extracted.get_span_context().trace_flags.sampled
        headers[parent.trace_id] = made
    assert headers[0x1111] != headers[0x2222]
    assert interceptor._context_from_headers(headers[0x1111]) is \
        interceptor._context_from_headers(headers[0x1111])
    # No trace at all: nothing to carry, and a header-less call has no context.
    assert interceptor._context_to_headers({}) == {}
    assert interceptor._context_from_headers({}) is None


def test_the_sql_tracer_of_the_same_arguments_is_made_once_and_still_makes_child_spans(
        recorder):
    sql = tracing.ChildSpansOnly(trace.get_tracer_provider())
    tracer = sql.get_tracer("tests.sql", "1.0", schema_url="https://example.org/schema")
    assert sql.get_tracer("tests.sql", "1.0", schema_url="https://example.org/schema") is tracer
    assert sql.get_tracer("tests.sql", "2.0") is not tracer
    with tracer.start_as_current_span("outside any trace") as outside:
        assert not outside.is_recording()
    with trace.get_tracer("tests").start_as_current_span("recorded") as parent:
        with tracer.start_as_current_span("child") as child:
            assert child.is_recording()
    [made] = [s for s in recorder.spans() if s.name == "child"]
    assert made.parent.span_id == parent.get_span_context().span_id
    assert made.instrumentation_scope.version == "1.0"


def test_a_pooled_connection_opened_before_the_instrumentation_is_instrumented_at_checkout(
        database_url, recorder):
    engine = make_engine(sqlalchemy_url(database_url), pool_size=1)
    try:
        with engine.connect() as conn:      # as if opened before `setup`: a plain cursor
            raw = conn.connection.dbapi_connection
            raw.cursor_factory = psycopg.Cursor
            conn.connection.info.pop("settlepay_traced", None)
        with trace.get_tracer("tests").start_as_current_span("later"), \
                engine.connect() as conn:
            assert conn.connection.dbapi_connection is raw
            conn.execute(text("SELECT 6 AS opened_before"))
    finally:
        engine.dispose()
    assert any("SELECT 6 AS opened_before" in s for s in _statements(recorder))


def test_an_outgoing_requests_call_carries_the_trace_and_makes_a_span_only_when_recorded(
        recorder):
    """The Stripe SDK's client (requests): inside a recorded trace a CLIENT span whose context
    the server receives; under an unsampled parent no span, the parent's context received
    (same trace id, unsampled)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            received.append(self.headers.get("traceparent", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/payment_intents"
    unsampled = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False,
                            trace_flags=TraceFlags(TraceFlags.DEFAULT))
    try:
        with trace.use_span(NonRecordingSpan(unsampled)):
            assert requests.get(url, timeout=5).status_code == 204
        with trace.get_tracer("test").start_as_current_span("recorded") as parent:
            assert requests.get(url, timeout=5).status_code == 204
    finally:
        server.shutdown()
        server.server_close()
    assert received[0] == f"00-{0xABC:032x}-{0xDEF:016x}-00"
    clients = [s for s in recorder.spans() if s.kind == trace.SpanKind.CLIENT]
    assert len(clients) == 1 and clients[0].parent.span_id == parent.get_span_context().span_id
    sent = clients[0].context
    assert received[1][:-3] == f"00-{sent.trace_id:032x}-{sent.span_id:016x}"
    assert int(received[1][-2:], 16) & 1   # sampled
    assert not [s for s in recorder.spans() if s.context.trace_id == 0xABC]


def test_the_fast_path_repeats_the_cursor_methods_own_parameters(engine, recorder):
    """psycopg's execute / executemany parameters are what the fast path spells out (a new
    psycopg that changes them is noticed here, and meanwhile gets the *args / **kwargs
    version); their keyword arguments reach the cursor on both paths."""
    from opentelemetry.instrumentation import psycopg as instrumentation

    assert tracing._parameters(psycopg.Cursor.execute) == tracing._EXECUTE
    assert tracing._parameters(psycopg.Cursor.executemany) == tracing._EXECUTEMANY
    unsampled = SpanContext(trace_id=0x6543, span_id=0x99, is_remote=False,
                            trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for span in (trace.use_span(NonRecordingSpan(unsampled)),
                     trace.get_tracer("tests").start_as_current_span("recorded")):
            with span, raw.cursor() as cursor:
                cursor.execute("SELECT %s::int AS binary_answer", (41,), binary=True,
                               prepare=True)
                assert cursor.pgresult.fformat(0) == 1 and cursor.fetchone() == (41,)
                cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS kw (n int)")
                cursor.executemany("INSERT INTO kw VALUES (%s) RETURNING n", [(1,), (2,)],
                                   returning=True)
                assert cursor.fetchone() == (1,) and cursor.nextset() and cursor.fetchone() == (2,)
        conn.rollback()
    assert any("binary_answer" in s for s in _statements(recorder))

    class OtherCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):   # another signature
            return super().execute(query, params, **kwargs)

    factory = instrumentation._new_cursor_factory(base_factory=OtherCursor)
    assert factory.execute.__code__.co_flags & 0x08     # the **kwargs version (CO_VARKEYWORDS)
    standard = instrumentation._new_cursor_factory()
    assert not standard.execute.__code__.co_flags & 0x08


def test_a_ledger_posting_makes_its_sql_span_only_inside_a_recorded_trace(engine, recorder):
    """ledger.post_now runs its statement on a plain psycopg cursor outside a recorded trace
    (no instrumentation subclass in between) and on the instrumented one inside: the posting
    is made either way, and only the recorded one has an SQL span."""
    import ledger
    from ledger import AccountRef, Leg, Transfer, postings

    def transfer(key: str) -> Transfer:
        return Transfer(key, "deposit", (Leg(AccountRef.gateway_clearing("stripe", "USD"), -5),
                                         Leg(AccountRef.player_cash(f"p-{key}", "USD"), 5)))

    unsampled = SpanContext(trace_id=0x7654, span_id=0xAA, is_remote=False,
                            trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with trace.use_span(NonRecordingSpan(unsampled)):
        assert ledger.post_now(engine, transfer("span-unsampled")).code.name == "OK"
    with trace.get_tracer("tests").start_as_current_span("recorded") as parent:
        assert ledger.post_now(engine, transfer("span-recorded")).code.name == "OK"
    connections = postings._autocommit(engine)._idle
    assert any(type(getattr(c, "_settlepay_ledger_cursor", None)) is psycopg.Cursor
               for c in connections)
    assert any(type(getattr(c, "_settlepay_traced_cursor", None)).__name__.startswith("Traced")
               for c in connections)
    posted = [s for s in recorder.spans() if "ledger_post" in str(
        (s.attributes or {}).get("db.statement") or (s.attributes or {}).get("db.query.text"))]
    assert len(posted) == 1
    assert posted[0].parent.span_id == parent.get_span_context().span_id
    with engine.connect() as conn:
        keys = conn.execute(text(
            "SELECT idempotency_key FROM ledger_transactions WHERE idempotency_key LIKE :key"
            " ORDER BY 1"), {"key": "span-%"}).scalars().all()
    assert keys == ["span-recorded", "span-unsampled"]
