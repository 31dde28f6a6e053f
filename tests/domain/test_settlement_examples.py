"""Worked examples from published sportsbook settlement rules, to the penny."""

from fractions import Fraction

import pytest

from domain import odds
from domain.settlement import (
    Bet,
    BetOutcome,
    BetType,
    Leg,
    LegOutcome,
    Pending,
    PlaceTerms,
    SelectionResult,
    settle,
    standard_place_terms,
)
from domain.settlement.results import InvalidResult

WON = SelectionResult("won")
LOST = SelectionResult("lost")
VOID = SelectionResult("lost", void_factor=1)


def single(stake, price, result, **kw):
    bet = Bet(BetType.SINGLE, stake, (Leg("m1", "s1", odds.parse(price)),), **kw)
    return settle(bet, {("m1", "s1"): result})


FIFTH_THREE_PLACES = PlaceTerms(Fraction(1, 5), 3)


def each_way(stake, price, result, terms=FIFTH_THREE_PLACES):
    bet = Bet(BetType.EACH_WAY, stake, (Leg("race", "horse", odds.parse(price)),),
              place_terms=terms)
    return settle(bet, {("race", "horse"): result})


def test_win_lose_void_push():
    assert single(1000, "10/1", WON).payout == 11000        # £10 at 10/1 returns £110
    assert single(1000, "10/1", LOST).payout == 0
    assert single(1000, "10/1", VOID).payout == 1000         # stake back
    push = SelectionResult("lost", void_factor=1)            # Asian handicap 0.0 on a draw
    assert single(1000, "1.90", push).payout == 1000
    assert single(1000, "10/1", VOID).outcome is BetOutcome.VOID


def test_two_way_dead_heat_pays_half_the_stake_at_full_odds():
    # "£10 at 10/1 in a two-way dead heat: £5 at 10/1 = £55.00 returned" (UK rules).
    settled = single(1000, "10/1", SelectionResult("won", dead_heat_factor="0.5"))
    assert settled.payout == 5500
    assert settled.legs == (LegOutcome.DEAD_HEAT,)


def test_three_way_dead_heat_rounds_down_to_the_penny():
    # £10 at 5/1, three tied: 10/3 staked at 6.00 = £20.00 exactly;
    # at 4/1: 10/3*5 = 16.666.. -> 16.66
    assert single(1000, "5/1", SelectionResult("won", dead_heat_factor="1/3")).payout == 2000
    settled = single(1000, "4/1", SelectionResult("won", dead_heat_factor="1/3"))
    assert settled.payout == 1666 and settled.exact_return == Fraction(5000, 3)


def test_asian_quarter_lines_half_win_and_half_lose():
    # £100 on -0.25 at 1.90, team wins: full win; draw: half lost, half refunded -> £50.
    assert single(10000, "1.90", SelectionResult("lost", void_factor="0.5")).payout == 5000
    # £100 on +0.75 at 1.90, team loses by 1: half lost; £100 on -0.75, wins by 1: half won
    # = £50 at 1.90 + £50 back = £145.
    half_won = single(10000, "1.90", SelectionResult("won", void_factor="0.5"))
    assert half_won.payout == 14500 and half_won.legs == (LegOutcome.HALF_WON,)


def test_american_minus_110_rounds_down():
    # $100 at -110 wins 90.909..., the return 190.90 (rounded down, never up).
    settled = single(10000, "-110", WON)
    assert settled.payout == 19090 and settled.exact_return == Fraction(210000, 11)


def test_rule4_comes_off_winnings_not_stake():
    # £10 at 4/1 with a 20p Rule 4 deduction: winnings 40 * 0.80 = 32, returned £42.
    assert single(1000, "4/1", SelectionResult("won", rule4="0.20")).payout == 4200
    # A loser is a loser; a void is a full refund whatever the deduction.
    assert single(1000, "4/1", SelectionResult("lost", rule4="0.20")).payout == 0
    assert single(1000, "4/1", SelectionResult("lost", void_factor=1, rule4="0.20")).payout == 1000


def test_each_way_win_place_and_unplaced():
    # £10 each-way (£20) at 10/1, 1/5 odds 3 places: wins -> 110 + 30 = £140;
    # second -> place part only, £10 at 3.00 = £30; fourth -> £0.
    assert each_way(2000, "10/1", SelectionResult("won", position=1)).payout == 14000
    placed = each_way(2000, "10/1", SelectionResult("lost", position=2))
    assert placed.payout == 3000 and placed.outcome is BetOutcome.WON
    assert each_way(2000, "10/1", SelectionResult("lost", position=4)).payout == 0
    # At 2/1 the placed-only return is below the total stake: a partial return.
    assert each_way(2000, "2/1", SelectionResult("lost", position=3)).outcome is BetOutcome.PARTIAL


def test_each_way_dead_heat_for_the_last_place():
    # Two runners tie for 3rd with 3 places: the place stake is halved. £5 e/w at 8/1, 1/5:
    # place price 1 + 8/5 = 2.60, half of £5 -> £6.50.
    assert each_way(1000, "8/1", SelectionResult("lost", position=3, tied=2)).payout == 650
    # A dead heat for first: win part at dead heat 1/2, place part in full (both are placed).
    both = each_way(1000, "8/1", SelectionResult("won", dead_heat_factor="0.5", position=1, tied=2))
    assert both.payout == 500 * 9 // 2 + 500 * Fraction(13, 5)


def test_each_way_with_rule4_applies_to_both_parts():
    # £10 e/w at 10/1, 1/4 odds, 25p Rule 4: win 10*(1+10*0.75)=85, place 10*(1+2.5*0.75)=28.75.
    terms = PlaceTerms(Fraction(1, 4), 3)
    won = SelectionResult("won", position=1, rule4="0.25")
    assert each_way(2000, "10/1", won, terms).payout == 11375


def test_each_way_non_runner_is_refunded_in_full():
    assert each_way(2000, "10/1", SelectionResult("lost", void_factor=1)).payout == 2000


def test_standard_place_terms_by_runners():
    assert standard_place_terms(4) is None
    assert standard_place_terms(6) == PlaceTerms(Fraction(1, 4), 2)
    assert standard_place_terms(8) == PlaceTerms(Fraction(1, 5), 3)
    assert standard_place_terms(10, handicap=True) == PlaceTerms(Fraction(1, 5), 3)
    assert standard_place_terms(14, handicap=True) == PlaceTerms(Fraction(1, 4), 3)
    assert standard_place_terms(16, handicap=True) == PlaceTerms(Fraction(1, 4), 4)
    assert standard_place_terms(16) == PlaceTerms(Fraction(1, 5), 3)


def parlay(stake, *prices):
    return Bet(BetType.PARLAY, stake,
               tuple(Leg(f"m{i}", "s", odds.parse(p)) for i, p in enumerate(prices)))


def test_parlay_multiplies_and_void_legs_count_at_one():
    bet = parlay(1000, "2.00", "3.00", "1.50")             # £10 treble pays £90
    assert settle(bet, {("m0", "s"): WON, ("m1", "s"): WON, ("m2", "s"): WON}).payout == 9000
    # One leg void: becomes a double at 2.00 * 1.50 = £30.
    assert settle(bet, {("m0", "s"): WON, ("m1", "s"): VOID, ("m2", "s"): WON}).payout == 3000
    # Any lost leg loses the whole parlay, even if the others are void.
    assert settle(bet, {("m0", "s"): VOID, ("m1", "s"): LOST, ("m2", "s"): WON}).payout == 0
    # Every leg void: the stake comes back.
    assert settle(bet, {("m0", "s"): VOID, ("m1", "s"): VOID, ("m2", "s"): VOID}).payout == 1000


def test_parlay_with_asian_half_results():
    # Half-won leg counts at (1 + price)/2, half-lost at 1/2: £10 * (2.9/2) * 0.5 * 2.0 = £14.50
    bet = parlay(1000, "1.90", "1.80", "2.00")
    res = {("m0", "s"): SelectionResult("won", void_factor="0.5"),
           ("m1", "s"): SelectionResult("lost", void_factor="0.5"), ("m2", "s"): WON}
    assert settle(bet, res).payout == 1450


def test_parlay_waits_for_every_leg():
    bet = parlay(1000, "2.00", "3.00")
    assert settle(bet, {("m0", "s"): WON}) == Pending(("m1",))
    # ...even when a leg has already lost: it settles once, with all results known.
    assert isinstance(settle(bet, {("m0", "s"): LOST}), Pending)


def test_invalid_bets_and_results_are_refused():
    with pytest.raises(ValueError):
        Bet(BetType.PARLAY, 1000, (Leg("m", "a", Fraction(2)),))
    with pytest.raises(ValueError):
        Bet(BetType.PARLAY, 1000, (Leg("m", "a", Fraction(2)), Leg("m", "b", Fraction(2))))
    with pytest.raises(ValueError):
        Bet(BetType.EACH_WAY, 1001, (Leg("m", "a", Fraction(2)),),
            place_terms=PlaceTerms(Fraction(1, 5), 3))
    with pytest.raises(ValueError):
        Bet(BetType.SINGLE, 0, (Leg("m", "a", Fraction(2)),))
    with pytest.raises(ValueError):
        Bet(BetType.SINGLE, 10.0, (Leg("m", "a", Fraction(2)),))
    with pytest.raises(InvalidResult):
        SelectionResult("won", void_factor="0.3")
    with pytest.raises(InvalidResult):
        SelectionResult("won", dead_heat_factor=0.5)
    with pytest.raises(InvalidResult):
        SelectionResult("won", rule4="0.95")


def test_result_json_round_trip():
    r = SelectionResult("won", void_factor="0.5", dead_heat_factor="1/3", position=1, tied=3,
                        rule4="0.1")
    assert SelectionResult.from_json(r.to_json()) == r
