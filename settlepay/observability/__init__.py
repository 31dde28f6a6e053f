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

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace

from settlepay.config import Settings, get_settings
from settlepay.observability import logs, metrics, tracing

# Commands that set themselves up (under their own service name) or only supervise others.
PROCESS_COMMANDS = frozenset({("api",), ("worker",), ("dev",)})
# Long-running commands set up here, without a span around their whole life.
LONG_RUNNING_COMMANDS = frozenset({("webhooks", "dispatch")})


def setup(settings: Settings, service: str) -> None:
    """Process-wide set-up: JSON logs, then (when telemetry is on) tracing and instrumentation,
    and business metrics recorded or not."""
    logs.configure(settings.log_level)
    metrics.set_enabled(settings.telemetry_enabled)
    tracing.configure(settings, service)


@contextmanager
def cli_command(path: tuple[str, ...]) -> Iterator[None]:
    """A one-shot `settlepay` command (ledger check, audit export, ...): JSON logs on stderr
    and one span named after the command, so its SQL is one trace."""
    if path in PROCESS_COMMANDS:
        yield
        return
    if path in LONG_RUNNING_COMMANDS:
        setup(get_settings(), "settlepay-" + "-".join(path))
        yield
        return
    root = logging.getLogger()
    level = root.level
    settings = get_settings()
    handler = logs.configure(settings.log_level)
    metrics.set_enabled(settings.telemetry_enabled)
    tracing.configure(settings, "settlepay-cli")
    try:
        with trace.get_tracer("settlepay.cli").start_as_current_span(
                "settlepay " + " ".join(path)):
            yield
    finally:   # the command is over (run in-process by tests: leave logging as it was)
        root.removeHandler(handler)
        root.setLevel(level)
