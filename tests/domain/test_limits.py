"""The responsible-gaming rules, without a database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.limits import (
    ChangeKind,
    ExclusionKind,
    InvalidRequest,
    PendingChange,
    Period,
    blocking_exclusion,
    check_deposit,
    effective_limits,
    plan_limit_change,
    self_exclusion,
    time_out,
)
from tests.support.compliance import NOW

DAY = timedelta(hours=24)


@pytest.mark.parametrize("current, requested, kind, delay", [
    (None, 10_000, ChangeKind.TIGHTEN, timedelta(0)),   # a first limit is tighter than none
    (10_000, 5_000, ChangeKind.TIGHTEN, timedelta(0)),
    (5_000, 10_000, ChangeKind.LOOSEN, DAY),
    (5_000, None, ChangeKind.LOOSEN, DAY),               # removing a limit loosens it
    (5_000, 5_000, ChangeKind.UNCHANGED, timedelta(0)),
])
def test_tightening_is_immediate_loosening_waits_24_hours(current, requested, kind, delay):
    plan = plan_limit_change(current, requested, NOW, DAY)
    assert plan.kind is kind and plan.effective_at == NOW + delay


@pytest.mark.parametrize("bad", [0, -1, 10.5, "100", True])
def test_a_limit_is_a_positive_integer(bad):
    with pytest.raises(InvalidRequest) as error:
        plan_limit_change(None, bad, NOW, DAY)
    assert error.value.code == "invalid_limit_amount"


def test_pending_changes_apply_only_when_due():
    pending = [PendingChange(Period.DAY, 20_000, NOW + DAY),
               PendingChange(Period.WEEK, None, NOW + DAY)]
    current = {Period.DAY: 10_000, Period.WEEK: 50_000}
    assert effective_limits(current, pending, NOW + DAY - timedelta(seconds=1)) == current
    assert effective_limits(current, pending, NOW + DAY) == {Period.DAY: 20_000}


def test_check_deposit_names_the_tightest_breach():
    limits = {Period.DAY: 10_000, Period.WEEK: 12_000, Period.MONTH: 100_000}
    assert check_deposit(limits, {Period.DAY: 4_000, Period.WEEK: 5_000}, 6_000) is None
    breach = check_deposit(limits, {Period.DAY: 4_000, Period.WEEK: 9_000}, 6_000)
    assert (breach.period, breach.limit, breach.used, breach.remaining) == (Period.WEEK, 12_000,
                                                                            9_000, 3_000)
    assert check_deposit({}, {}, 10**12) is None


def test_exclusions_block_deposits_and_bets_not_withdrawals():
    permanent = self_exclusion(NOW, None)
    for operation in ("deposit", "bet"):
        assert blocking_exclusion([permanent], operation, NOW) == permanent
    assert blocking_exclusion([permanent], "withdrawal", NOW) is None

    pause = time_out(NOW, timedelta(hours=72))
    assert blocking_exclusion([pause], "bet", NOW + timedelta(hours=71)) == pause
    assert blocking_exclusion([pause], "bet", NOW + timedelta(hours=72)) is None
    # With both active, the self-exclusion is the one named.
    assert blocking_exclusion([pause, permanent], "deposit",
                              NOW).kind is ExclusionKind.SELF_EXCLUSION


def test_exclusion_durations_are_bounded():
    with pytest.raises(InvalidRequest, match="at least"):
        self_exclusion(NOW, timedelta(days=30))
    assert self_exclusion(NOW, timedelta(days=365)).ends_at == NOW + timedelta(days=365)
    for bad in (timedelta(hours=1), timedelta(weeks=7)):
        with pytest.raises(InvalidRequest):
            time_out(NOW, bad)
