"""SQL spans from every kind of psycopg connection, psycopg_pool's included."""

from __future__ import annotations

from opentelemetry import trace
from psycopg_pool import ConnectionPool
from sqlalchemy import text


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
