"""The retry policy: what happens after each attempt, without a clock or a database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from webhooks.schedule import Outcome, RetryPolicy, Trigger, retry_after_seconds

POLICY = RetryPolicy((5.0, 300.0, 1800.0), jitter_ratio=0.0, retry_after_max_seconds=600.0)
RNG = random.Random(7)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_success(status):
    assert POLICY.after_attempt(Trigger.SCHEDULED, 1, status, None, RNG).outcome == \
        Outcome.SUCCEEDED


@pytest.mark.parametrize("status", [None, 100, 199, 300, 301, 302, 307, 400, 404, 500, 503])
def test_anything_else_is_a_failure_retried_on_the_schedule(status):
    after = POLICY.after_attempt(Trigger.SCHEDULED, 1, status, None, RNG)
    assert after.outcome == Outcome.RETRY and after.delay_seconds == 5.0 and not after.gone


def test_a_scheduled_message_gets_one_plus_len_schedule_attempts():
    outcomes = [POLICY.after_attempt(Trigger.SCHEDULED, n, 500, None, RNG)
                for n in range(1, POLICY.attempts_max + 1)]
    assert POLICY.attempts_max == 4
    assert [o.outcome for o in outcomes] == [Outcome.RETRY] * 3 + [Outcome.EXHAUSTED]
    assert [o.delay_seconds for o in outcomes[:3]] == [5.0, 300.0, 1800.0]


def test_the_default_schedule_is_the_documented_one():
    from settlepay.config import Settings

    policy = RetryPolicy.from_settings(Settings())
    assert policy.schedule_seconds == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert policy.attempts_max == 10 and policy.jitter_ratio == 0.2


def test_jitter_stays_within_twenty_percent_and_varies():
    policy = RetryPolicy((100.0,), jitter_ratio=0.2)
    delays = {policy.after_attempt(Trigger.SCHEDULED, 1, 500, None, random.Random(seed))
              .delay_seconds for seed in range(50)}
    assert all(80.0 <= d <= 120.0 for d in delays) and len(delays) > 10


def test_410_fails_at_once_and_marks_the_endpoint_gone():
    after = POLICY.after_attempt(Trigger.SCHEDULED, 1, 410, None, RNG)
    assert after.outcome == Outcome.FAILED and after.gone


@pytest.mark.parametrize("status", [429, 502, 504])
def test_throttling_answers_honour_retry_after_clamped(status):
    honoured = POLICY.after_attempt(Trigger.SCHEDULED, 1, status, 42.0, RNG)
    assert honoured.delay_seconds == 42.0 and honoured.throttle_seconds == 42.0
    clamped = POLICY.after_attempt(Trigger.SCHEDULED, 1, status, 86_400.0, RNG)
    assert clamped.delay_seconds == 600.0 and clamped.throttle_seconds == 600.0
    without = POLICY.after_attempt(Trigger.SCHEDULED, 2, status, None, RNG)
    assert without.delay_seconds == 300.0 and without.throttle_seconds == 5.0


def test_retry_after_on_other_statuses_is_ignored():
    after = POLICY.after_attempt(Trigger.SCHEDULED, 1, 500, 42.0, RNG)
    assert after.delay_seconds == 5.0 and after.throttle_seconds is None


@pytest.mark.parametrize("trigger", [Trigger.MANUAL, Trigger.RECOVER])
def test_manual_and_recover_attempts_are_not_rescheduled(trigger):
    assert POLICY.after_attempt(trigger, 1, 500, None, RNG).outcome == Outcome.FAILED
    assert POLICY.after_attempt(trigger, 1, 200, None, RNG).outcome == Outcome.SUCCEEDED


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True),
                               now) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
