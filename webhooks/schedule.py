"""What happens after an attempt: success, another try later (when), or the end.

    policy = RetryPolicy.from_settings(settings)
    after = policy.after_attempt(Trigger.SCHEDULED, attempts_made=1, status_code=503,
                                 retry_after=None, rng=random.Random())
    # After(outcome=Outcome.RETRY, delay_seconds=~5.0, throttle_seconds=None, gone=False)

Pure: no clock, no database. The caller adds `delay_seconds` to its own clock.
Must never: treat anything but 2xx as success.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from settlepay.config import Settings

THROTTLE_STATUSES = frozenset({429, 502, 504})
GONE = 410


class Trigger(StrEnum):
    SCHEDULED = "scheduled"     # the event's own delivery, retried on the schedule
    MANUAL = "manual"           # POST /v1/events/{id}/resend: one attempt
    RECOVER = "recover"         # POST /v1/webhook_endpoints/{id}/recover: one attempt each


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"             # failed; tried again after delay_seconds
    EXHAUSTED = "exhausted"     # failed; the schedule is used up (message.attempt.exhausted)
    FAILED = "failed"           # failed; a manual / recover attempt, or the endpoint is gone


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date (None: absent, garbage)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class After:
    outcome: Outcome
    delay_seconds: float | None = None      # RETRY: until the next attempt
    throttle_seconds: float | None = None   # 429 / 502 / 504: the endpoint pauses this long
    gone: bool = False                      # 410: the endpoint is disabled


@dataclass(frozen=True)
class RetryPolicy:
    schedule_seconds: tuple[float, ...]
    jitter_ratio: float = 0.2
    retry_after_max_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(tuple(settings.webhooks_retry_schedule_seconds),
                   settings.webhooks_retry_jitter_ratio,
                   settings.webhooks_retry_after_max_seconds)

    @property
    def attempts_max(self) -> int:
        """Attempts of a scheduled message: the immediate one plus one per schedule entry."""
        return 1 + len(self.schedule_seconds)

    def jittered(self, seconds: float, rng: random.Random) -> float:
        if self.jitter_ratio <= 0:
            return seconds
        return seconds * rng.uniform(1 - self.jitter_ratio, 1 + self.jitter_ratio)

    def clamp(self, retry_after: float) -> float:
        return min(max(retry_after, 0.0), self.retry_after_max_seconds)

    def after_attempt(self, trigger: Trigger, attempts_made: int, status_code: int | None,
                      retry_after: float | None, rng: random.Random) -> After:
        """The message's fate after its `attempts_made`-th attempt answered `status_code`
        (None: no HTTP answer) with `retry_after` seconds (None: no usable header)."""
        if is_success(status_code):
            return After(Outcome.SUCCEEDED)
        gone = status_code == GONE
        throttle = None
        if status_code in THROTTLE_STATUSES:
            # The endpoint says it is overloaded: nothing goes to it for a while, its
            # Retry-After (clamped) when it gave one, otherwise the schedule's first wait.
            throttle = (self.clamp(retry_after) if retry_after is not None
                        else self.schedule_seconds[0] if self.schedule_seconds else 0.0)
        if gone or trigger != Trigger.SCHEDULED:
            return After(Outcome.FAILED, throttle_seconds=throttle, gone=gone)
        if attempts_made >= self.attempts_max:
            return After(Outcome.EXHAUSTED, throttle_seconds=throttle)
        delay = self.jittered(self.schedule_seconds[attempts_made - 1], rng)
        if retry_after is not None and status_code in THROTTLE_STATUSES:
            delay = self.clamp(retry_after)   # the receiver's word on when to come back
        return After(Outcome.RETRY, delay_seconds=delay, throttle_seconds=throttle)
