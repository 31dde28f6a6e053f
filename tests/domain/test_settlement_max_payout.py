"""The largest payout a bet can get (checked at intake against the configured maximum) is a
true upper bound of every settlement, and it is reached when everything wins."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from domain.settlement import (
    Bet,
    BetType,
    Leg,
    PlaceTerms,
    SelectionResult,
    max_payout,
    max_return,
    settle,
)

prices = st.fractions(min_value=Fraction(101, 100), max_value=Fraction(1000),
                      max_denominator=1000)
stakes = st.integers(1, 10_000_000).map(lambda n: 2 * n)   # even: each-way stakes too
results = st.builds(
    SelectionResult,
    result=st.sampled_from(["won", "lost"]),
    void_factor=st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1)]),
    dead_heat_factor=st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(1, 3)]),
    position=st.none() | st.integers(1, 6),
    tied=st.integers(1, 3),
    rule4=st.sampled_from([Fraction(0), Fraction(1, 10), Fraction(9, 10)]),
)
terms = st.builds(PlaceTerms, fraction=st.sampled_from([Fraction(1, 4), Fraction(1, 5), 1]),
                  places=st.integers(1, 4))


@given(stakes, st.lists(st.tuples(prices, results), min_size=1, max_size=6), terms)
def test_no_result_pays_more_than_the_maximum_payout(stake, legs, place_terms):
    res = {(f"m{i}", "s"): result for i, (_, result) in enumerate(legs)}
    bet_legs = tuple(Leg(f"m{i}", "s", price) for i, (price, _) in enumerate(legs))
    bets = [Bet(BetType.SINGLE, stake, bet_legs[:1]),
            Bet(BetType.EACH_WAY, stake, bet_legs[:1], place_terms=place_terms)]
    if len(bet_legs) > 1:
        bets.append(Bet(BetType.PARLAY, stake, bet_legs))
    for bet in bets:
        settled = settle(bet, res)
        assert settled.exact_return <= max_return(bet)
        assert settled.payout <= max_payout(bet)


@given(stakes, st.lists(prices, min_size=2, max_size=6))
def test_a_parlay_whose_legs_all_win_gets_exactly_the_maximum_payout(stake, leg_prices):
    bet = Bet(BetType.PARLAY, stake, tuple(Leg(f"m{i}", "s", p) for i, p in enumerate(leg_prices)))
    won = {(f"m{i}", "s"): SelectionResult("won") for i in range(len(leg_prices))}
    assert settle(bet, won).payout == max_payout(bet)


def test_an_each_way_winner_gets_the_win_and_the_place_price():
    bet = Bet(BetType.EACH_WAY, 2_000, (Leg("m", "horse", Fraction(11)),),
              place_terms=PlaceTerms(Fraction(1, 5), 3))
    # 1,000 at 11.00 + 1,000 at 3.00
    assert max_payout(bet) == 14_000
    assert settle(bet, {("m", "horse"): SelectionResult("won", position=1)}).payout == 14_000


def test_a_twenty_leg_parlay_at_long_odds_has_a_maximum_beyond_any_bigint():
    bet = Bet(BetType.PARLAY, 10**12, tuple(Leg(f"m{i}", "s", Fraction(1001)) for i in range(20)))
    assert max_payout(bet) > 2**63 - 1
