"""Fixtures of the observability tests: the in-memory span recorder (tests/support/telemetry.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.telemetry import SpanRecorder, span_recorder

__all__ = ["span_recorder"]


@pytest.fixture
def recorder(span_recorder: SpanRecorder) -> Iterator[SpanRecorder]:
    """Spans finished during the test, and only those."""
    with span_recorder.recording() as recording:
        yield recording
