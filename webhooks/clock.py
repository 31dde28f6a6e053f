"""The dispatcher's clock: every time it compares or schedules comes from here, so tests can
run days of retries and the 5-day disabling window in milliseconds (tests/support/webhooks.py
has a clock that only moves when told)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
