"""Event-type filters and the volume rule: per-bet events only by subscription."""

from __future__ import annotations

from webhooks.filters import invalid_filters, matches, wants_per_bet


def test_star_matches_everything_but_per_bet_events():
    for event_type in ("deposit.succeeded", "market.settled", "market.resettled",
                       "endpoint.disabled", "player.created"):
        assert matches(["*"], event_type)
    for event_type in ("bet.placed", "bet.settled", "bet.resettled", "bet.rolled_back"):
        assert not matches(["*"], event_type)
    assert not wants_per_bet(["*"])


def test_per_bet_events_are_had_by_naming_them():
    assert matches(["bet.*"], "bet.settled") and wants_per_bet(["bet.*"])
    assert matches(["*", "bet.settled"], "bet.settled")
    assert not matches(["bet.settled"], "bet.rolled_back")


def test_prefix_and_exact_filters():
    assert matches(["deposit.*"], "deposit.failed")
    assert not matches(["deposit.*"], "withdrawal.paid")
    assert not matches(["deposit.*"], "deposits.x")
    assert matches(["withdrawal.paid"], "withdrawal.paid")
    assert not matches(["withdrawal.paid"], "withdrawal.paid.extra")


def test_invalid_filters_are_named():
    assert invalid_filters(["*", "deposit.*", "bet.settled", "a_b.c_d"]) == []
    assert invalid_filters(["Deposit.*", "deposit.", "*.x", "", "a..b", "x y"]) == [
        "Deposit.*", "deposit.", "*.x", "", "a..b", "x y"]
