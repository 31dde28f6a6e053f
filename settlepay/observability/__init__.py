"""Observability of every settlepay process: traces, structured logs, Prometheus metrics.

    observability.setup(settings, "settlepay-api")     # once, at the start of a process

- `tracing`: the OpenTelemetry tracer provider (exporter by configuration: none, OTLP,
  console) and the psycopg / httpx / requests instrumentations (the Stripe SDK speaks through
  requests, the KYC and notification adapters through httpx);
- `logs`: JSON lines through structlog for every logger of the process (settlepay's, uvicorn's,
  Temporal's `workflow.logger` / `activity.logger`), each with trace_id / span_id, request id
  and workflow id, redacted by `redaction`;
- `metrics`: the Prometheus metrics every process exports (HTTP, business, database-derived).

This package must never hold business rules, and nothing it logs or labels may carry a
secret, a code, card data or personal data (a label never names a player, bet or workflow).
"""

from __future__ import annotations

from settlepay.config import Settings
from settlepay.observability import logs, metrics, tracing


def setup(settings: Settings, service: str) -> None:
    """Process-wide set-up: JSON logs, then (when telemetry is on) tracing and instrumentation,
    and business metrics recorded or not."""
    logs.configure(settings.log_level)
    metrics.set_enabled(settings.telemetry_enabled)
    tracing.configure(settings, service)
