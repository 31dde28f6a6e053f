"""Properties of the settlement maths that hold for every price, stake and result."""

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.settlement import Bet, BetType, Leg, PlaceTerms, SelectionResult, leg_factor, settle

prices = st.fractions(min_value=Fraction(101, 100), max_value=Fraction(1000), max_denominator=1000)
stakes = st.integers(1, 10_000_000)
results = st.builds(
    SelectionResult,
    result=st.sampled_from(["won", "lost"]),
    void_factor=st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1)]),
    dead_heat_factor=st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(1, 3), Fraction(1, 4)]),
    rule4=st.sampled_from([Fraction(0), Fraction(1, 10), Fraction(1, 4)]),
)


@given(stakes, prices, results)
def test_single_is_rounded_down_once_and_never_above_the_full_win(stake, price, result):
    bet = Bet(BetType.SINGLE, stake, (Leg("m", "s", price),))
    settled = settle(bet, {("m", "s"): result})
    assert settled.payout == math.floor(settled.exact_return)
    assert 0 <= settled.exact_return - settled.payout < 1
    assert 0 <= settled.payout <= stake * price


@given(stakes, prices)
def test_single_outcomes_are_ordered(stake, price):
    def pay(result):
        bet = Bet(BetType.SINGLE, stake, (Leg("m", "s", price),))
        return settle(bet, {("m", "s"): result}).payout
    half = Fraction(1, 2)
    won, half_won = pay(SelectionResult("won")), pay(SelectionResult("won", void_factor=half))
    void = pay(SelectionResult("lost", void_factor=1))
    half_lost = pay(SelectionResult("lost", void_factor=half))
    assert won >= half_won >= void == stake >= half_lost >= pay(SelectionResult("lost")) == 0


@given(stakes, st.lists(st.tuples(prices, results), min_size=2, max_size=6), st.randoms())
def test_parlay_is_the_product_of_leg_factors_in_any_order(stake, legs, rnd):
    bet_legs = tuple(Leg(f"m{i}", "s", price) for i, (price, _) in enumerate(legs))
    res = {(f"m{i}", "s"): r for i, (_, r) in enumerate(legs)}
    settled = settle(Bet(BetType.PARLAY, stake, bet_legs), res)
    expected = stake * math.prod((leg_factor(p, r) for p, r in legs), start=Fraction(1))
    assert settled.exact_return == expected
    shuffled = list(bet_legs)
    rnd.shuffle(shuffled)
    assert settle(Bet(BetType.PARLAY, stake, tuple(shuffled)), res).payout == settled.payout
    if any(not r.won and r.void_factor == 0 for _, r in legs):
        assert settled.payout == 0


@given(stakes, st.lists(prices, min_size=2, max_size=6))
def test_parlay_of_void_legs_returns_the_stake(stake, leg_prices):
    legs = tuple(Leg(f"m{i}", "s", p) for i, p in enumerate(leg_prices))
    res = {(f"m{i}", "s"): SelectionResult("won", void_factor=1) for i in range(len(legs))}
    assert settle(Bet(BetType.PARLAY, stake, legs), res).payout == stake


@given(stakes, prices, results, prices)
def test_a_void_leg_turns_a_parlay_into_the_single_of_the_rest(stake, price, result, other):
    parlay = Bet(BetType.PARLAY, stake, (Leg("a", "s", price), Leg("b", "s", other)))
    single = Bet(BetType.SINGLE, stake, (Leg("a", "s", price),))
    res = {("a", "s"): result, ("b", "s"): SelectionResult("lost", void_factor=1)}
    assert settle(parlay, res).payout == settle(single, res).payout


@settings(max_examples=200)
@given(st.integers(1, 5_000_000).map(lambda n: 2 * n), prices,
       st.integers(1, 20), st.integers(1, 3), st.sampled_from([Fraction(1, 4), Fraction(1, 5)]),
       st.integers(2, 4))
def test_each_way_is_a_win_bet_plus_a_place_bet(stake, price, position, tied, fraction, places):
    terms = PlaceTerms(fraction, places)
    won = position == 1
    result = SelectionResult("won" if won else "lost",
                             dead_heat_factor=Fraction(1, tied) if won else 1,
                             position=position, tied=tied)
    bet = Bet(BetType.EACH_WAY, stake, (Leg("r", "h", price),), place_terms=terms)
    ew = settle(bet, {("r", "h"): result})
    win_part = Fraction(stake, 2) * leg_factor(price, result)
    placed = Fraction(max(0, min(tied, places - position + 1)), tied)
    place_part = Fraction(stake, 2) * placed * (1 + (price - 1) * fraction)
    assert ew.exact_return == win_part + place_part
    assert ew.payout == math.floor(win_part + place_part)
    # placed within the places means at least part of the place stake comes back with winnings
    if position <= places and tied == 1:
        assert ew.payout >= stake // 2
