"""bench/observability.py's paired mode: the window both sides share, the median's bootstrap
interval and the verdict rule written in its docstring."""

from __future__ import annotations

import pytest

from bench.observability import BUDGET, common_window_rates, decide, median_interval


def test_rates_are_counted_over_the_window_both_sides_were_loaded():
    # a finishes its 4 at 2.0 s; b has done 2 by then (its tail, run alone, is not counted)
    a, b = [0.5, 1.0, 1.5, 2.0], [0.9, 1.8, 2.7, 3.6]
    assert common_window_rates(a, b) == (2.0, 1.0)
    assert common_window_rates(b, a) == (1.0, 2.0)


def test_the_interval_holds_the_median_and_stays_within_the_rounds():
    values = [0.01, 0.03, 0.02, -0.01, 0.04, 0.00, 0.02]
    median, lo, hi = median_interval(values)
    assert median == 0.02
    assert min(values) <= lo <= median <= hi <= max(values)
    assert lo < hi
    assert median_interval(values) == (median, lo, hi)      # a fixed seed: reproducible
    assert median_interval([0.01, 0.02, 0.03]) == (0.02, 0.01, 0.03)   # 3 rounds: min-max


QUIET = [-0.01, 0.0, 0.01, 0.005, -0.005]       # A/A rounds: noise within 1 %


@pytest.mark.parametrize(("overheads", "a_a", "expected"), [
    ([0.01, 0.02, 0.015, 0.03, 0.02], QUIET, "within budget"),
    ([0.08, 0.09, 0.10, 0.085, 0.095], QUIET, "not within budget"),
    # the interval straddles 5 %
    ([0.02, 0.08, 0.05, 0.03, 0.07], QUIET, "undecided"),
    # the figure looks fine, but the method's A/A spread is larger than the budget
    ([0.01, 0.02, 0.015, 0.03, 0.02], [-0.08, 0.06, 0.0, 0.07, -0.09], "undecided"),
    # above the budget but not above what A/A shows for nothing
    ([0.08, 0.09, 0.10, 0.085, 0.095], [-0.12, 0.11, 0.0, 0.12, -0.10], "undecided"),
    # too few rounds decide nothing, however clean
    ([0.01, 0.01], [0.0, 0.0], "undecided"),
])
def test_the_verdict(overheads, a_a, expected):
    verdict, x, y = decide(overheads, a_a)
    assert verdict.split(" (")[0] == expected
    assert x == median_interval(overheads)[0]
    assert y >= 0
    assert BUDGET == 0.05
