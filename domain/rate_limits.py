"""Rate limits as values: a token bucket's size and refill, which one applies to a request, and
the bucket's arithmetic (the reference the PostgreSQL and Redis buckets implement).

A limit is `requests` per `window_seconds`: the bucket holds at most `requests` tokens (the
burst) and refills at requests / window_seconds tokens a second; a request takes one token or
is refused. Limits apply

* per API key: the key's own limit (`rate_limits["*"]` on the key) or the configured default;
* per API key and scope, where a limit is set for the scope a route needs: the key's own
  (`rate_limits["deposits:write"]`) or the configured one for that scope. A scope without a
  limit has no bucket of its own.

Must never: read a clock, a database or the network (the caller passes the time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.scopes import unknown

WHOLE_KEY = "*"
MAX_REQUESTS = 1_000_000
MAX_WINDOW_SECONDS = 86_400


class InvalidRateLimit(ValueError):
    """A rate limit definition that cannot be used (unknown scope, out-of-range numbers)."""


@dataclass(frozen=True)
class RateLimit:
    requests: int            # bucket size: the burst a client may send at once
    window_seconds: int      # the time in which an empty bucket fills up again

    def __post_init__(self) -> None:
        if not (type(self.requests) is int and 1 <= self.requests <= MAX_REQUESTS):
            raise InvalidRateLimit(f"requests must be an integer from 1 to {MAX_REQUESTS}")
        if not (type(self.window_seconds) is int
                and 1 <= self.window_seconds <= MAX_WINDOW_SECONDS):
            raise InvalidRateLimit(
                f"window_seconds must be an integer from 1 to {MAX_WINDOW_SECONDS}")

    @property
    def per_second(self) -> float:
        return self.requests / self.window_seconds

    @property
    def policy(self) -> str:
        """The IETF draft's RateLimit-Policy value: `<quota>;w=<window>`."""
        return f"{self.requests};w={self.window_seconds}"

    def as_json(self) -> dict[str, int]:
        return {"requests": self.requests, "window_seconds": self.window_seconds}


def parse(raw: Mapping[str, Any]) -> dict[str, RateLimit]:
    """{"*" | scope: {"requests": n, "window_seconds": s}} → RateLimits; InvalidRateLimit when
    a name is neither "*" nor a known scope, or a value is out of range."""
    names = [name for name in raw if name != WHOLE_KEY]
    if bad := unknown(names):
        raise InvalidRateLimit(f"rate limits for unknown scopes: {', '.join(bad)}")
    limits = {}
    for name, value in raw.items():
        if isinstance(value, RateLimit):
            limits[name] = value
            continue
        if not isinstance(value, Mapping) or set(value) != {"requests", "window_seconds"}:
            raise InvalidRateLimit(f"{name}: a limit is {{requests, window_seconds}}")
        limits[name] = RateLimit(value["requests"], value["window_seconds"])
    return limits


def key_limit(overrides: Mapping[str, RateLimit], default: RateLimit) -> RateLimit:
    """The limit of a key's own bucket."""
    return overrides.get(WHOLE_KEY, default)


def scope_limit(scope: str, overrides: Mapping[str, RateLimit],
                configured: Mapping[str, RateLimit]) -> RateLimit | None:
    """The limit of a key's bucket for one scope, or None when the scope has none."""
    return overrides.get(scope) or configured.get(scope)


@dataclass(frozen=True)
class Decision:
    """What a bucket said about one request."""

    allowed: bool
    limit: RateLimit
    tokens: float            # left after this request

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens))

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds until the bucket holds a token again (0 when one is there)."""
        return max(0, math.ceil((1 - self.tokens) / self.limit.per_second))

    @property
    def reset_seconds(self) -> int:
        """Whole seconds until the bucket is full again."""
        return max(0, math.ceil((self.limit.requests - self.tokens) / self.limit.per_second))


def take(tokens: float, elapsed_seconds: float, limit: RateLimit) -> Decision:
    """A bucket that held `tokens` `elapsed_seconds` ago is asked for one token: refilled (never
    above the limit), one taken if there is one. The reference of the SQL and Lua buckets."""
    refilled = min(float(limit.requests), tokens + max(0.0, elapsed_seconds) * limit.per_second)
    if refilled >= 1:
        return Decision(True, limit, refilled - 1)
    return Decision(False, limit, refilled)
