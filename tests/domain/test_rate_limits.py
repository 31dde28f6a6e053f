"""domain/rate_limits.py: limit values, which limit applies, and the bucket's arithmetic."""

from __future__ import annotations

import pytest

from domain.rate_limits import InvalidRateLimit, RateLimit, key_limit, parse, scope_limit, take

TEN_PER_SECOND = RateLimit(10, 1)


def test_a_full_bucket_gives_its_burst_then_refuses():
    tokens, allowed = 10.0, []
    for _ in range(12):
        decision = take(tokens, 0.0, TEN_PER_SECOND)
        allowed.append(decision.allowed)
        tokens = decision.tokens
    assert allowed == [True] * 10 + [False] * 2
    assert decision.remaining == 0 and decision.retry_after_seconds == 1
    assert decision.reset_seconds == 1


def test_a_bucket_refills_with_time_but_never_above_its_size():
    assert take(0.0, 0.05, TEN_PER_SECOND).allowed is False      # half a token
    half = take(0.0, 0.15, TEN_PER_SECOND)
    assert half.allowed and half.tokens == pytest.approx(0.5)
    full = take(3.0, 3600.0, TEN_PER_SECOND)
    assert full.tokens == pytest.approx(9.0) and full.remaining == 9
    assert take(5.0, -2.0, TEN_PER_SECOND).tokens == pytest.approx(4.0)   # clock skew: no refill


def test_retry_after_and_reset_follow_the_refill_rate():
    slow = RateLimit(60, 60)                                    # one a second
    decision = take(0.25, 0.0, slow)
    assert not decision.allowed and decision.retry_after_seconds == 1
    assert decision.reset_seconds == 60
    hourly = RateLimit(2, 3600)                                  # one per 30 minutes
    decision = take(0.0, 0.0, hourly)
    assert decision.retry_after_seconds == 1800 and decision.reset_seconds == 3600
    assert hourly.policy == "2;w=3600" and hourly.as_json() == {"requests": 2,
                                                                "window_seconds": 3600}


def test_a_key_limit_overrides_the_default_and_scopes_have_buckets_only_when_limited():
    default = RateLimit(100, 1)
    overrides = parse({"*": {"requests": 5, "window_seconds": 2},
                       "deposits:write": {"requests": 1, "window_seconds": 1}})
    configured = {"bets:write": RateLimit(20, 1), "deposits:write": RateLimit(9, 1)}
    assert key_limit(overrides, default) == RateLimit(5, 2)
    assert key_limit({}, default) == default
    assert scope_limit("deposits:write", overrides, configured) == RateLimit(1, 1)
    assert scope_limit("bets:write", overrides, configured) == RateLimit(20, 1)
    assert scope_limit("players:read", overrides, configured) is None


@pytest.mark.parametrize("raw", [
    {"root": {"requests": 1, "window_seconds": 1}},
    {"*": {"requests": 0, "window_seconds": 1}},
    {"*": {"requests": 1, "window_seconds": 0}},
    {"*": {"requests": 1.5, "window_seconds": 1}},
    {"*": {"requests": 1}},
    {"*": 10},
])
def test_unusable_limits_are_refused(raw):
    with pytest.raises(InvalidRateLimit):
        parse(raw)
