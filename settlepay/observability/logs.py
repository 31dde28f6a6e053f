"""JSON log lines (structlog) for every logger of a process.

`configure(level)` routes the standard library's root logger through structlog's
ProcessorFormatter, so settlepay's `logging.getLogger(...)`, uvicorn's loggers and Temporal's
`workflow.logger` / `activity.logger` all write one JSON object per line:

    {"timestamp": "...", "level": "info", "logger": "settlepay.api", "event": "...",
     "trace_id": "<32 hex>", "span_id": "<16 hex>", "request_id": "...",
     "workflow_id": "deposit-...", "activity_type": "...", ...}

The request id comes from the API's request middleware (`bind_request`); workflow and activity
ids from the record Temporal's loggers attach; trace and span ids from the current span, or,
where an exception handler runs after the request's span ended (trace_id 0), from the ids the
request middleware bound when the request came in. Every event goes through
`redaction.redact_event` last.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace
from temporalio import activity, workflow

from settlepay.observability.redaction import redact_event

# The request being served (API) and the trace ids it arrived with.
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "settlepay_request_id", default=None)
_request_trace: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "settlepay_request_trace", default=None)

HANDLER_NAME = "settlepay-json"

# Logger-adapter fields Temporal attaches to a record (only ids are kept from them).
_TEMPORAL_IDS = {
    "temporal_workflow": ("workflow_id", "run_id", "workflow_type"),
    "temporal_activity": ("workflow_id", "activity_id", "activity_type"),
}


def bind_request(request_id: str) -> None:
    """Called by the API's request middleware: later log lines of this request carry its id
    and the trace ids it started with."""
    _request_id.set(request_id)
    _request_trace.set(span_ids())


def request_id() -> str | None:
    return _request_id.get()


def span_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span; None when there is none (id 0)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def trace_id() -> str | None:
    """The current trace id in hex, falling back to the id the request came in with."""
    ids = span_ids() or _request_trace.get()
    return ids[0] if ids else None


def _add_context(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    ids = span_ids() or _request_trace.get()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    rid = _request_id.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    record = event.get("_record")
    for attribute, names in _TEMPORAL_IDS.items():
        details = getattr(record, attribute, None) if record is not None else None
        if isinstance(details, dict):
            for name in names:
                if details.get(name) is not None:
                    event.setdefault(name, details[name])
    return event


def _drop_copies(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    # ExtraAdder copied the adapters' whole dicts (task queue, attempt, ...): ids are enough;
    # and the record's formatted `message` repeats `event`.
    for attribute in _TEMPORAL_IDS:
        event.pop(attribute, None)
    if event.get("message") == event.get("event"):
        event.pop("message", None)
    return event


def temporal_details_as_fields() -> None:
    """Temporal's workflow / activity loggers put their details on the record (kept as id
    fields above) instead of appending them to the message."""
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def processors() -> list[Any]:
    """The chain every event goes through, structlog's own and the standard library's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _add_context,
        _drop_copies,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
    ]


def json_formatter() -> logging.Formatter:
    """A formatter rendering standard-library records as the JSON lines above."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(default=str)],
    )


def configure(level: str = "INFO", stream: Any = None) -> logging.Handler:
    """JSON lines on `stream` (stderr) for the root logger and structlog; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level,
                    structlog.stdlib.PositionalArgumentsFormatter(),
                    *processors(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    temporal_details_as_fields()
    return handler
