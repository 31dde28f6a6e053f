"""Odds formats convert to one exact decimal price; floats and nonsense are refused."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import odds
from domain.odds import InvalidOdds, OddsFormat


@pytest.mark.parametrize("text, price", [
    ("2.50", Fraction(5, 2)), ("1.01", Fraction(101, 100)), ("11", Fraction(11)),
    ("10/1", Fraction(11)), ("1/2", Fraction(3, 2)), ("5/4", Fraction(9, 4)),
    ("100/30", Fraction(13, 3)),
    ("+150", Fraction(5, 2)), ("-200", Fraction(3, 2)), ("-110", Fraction(21, 11)),
    ("+100", Fraction(2)),
])
def test_every_format_gives_the_exact_decimal_price(text, price):
    assert odds.parse(text) == price


def test_explicit_format_overrides_detection():
    assert odds.parse("2", OddsFormat.DECIMAL) == 2
    assert odds.parse("150", "american") == Fraction(5, 2)
    with pytest.raises(InvalidOdds):
        odds.parse("2.50", OddsFormat.FRACTIONAL)


@pytest.mark.parametrize("bad", ["1.00", "0.5", "abc", "", "0/1", "1/0", "+99", "-50",
                                 "2.123456", "1e3", "-0"])
def test_invalid_prices_are_refused(bad):
    with pytest.raises(InvalidOdds):
        odds.parse(bad)


def test_floats_are_refused_everywhere():
    with pytest.raises(TypeError):
        odds.parse(2.5)
    with pytest.raises(TypeError):
        odds.from_decimal(2.5)
    with pytest.raises(TypeError):
        odds.from_american(150.0)


def test_decimal_and_int_inputs():
    assert odds.from_decimal(Decimal("3.25")) == Fraction(13, 4)
    assert odds.from_american(150) == Fraction(5, 2)
    assert odds.to_fractional(Fraction(11)) == "10/1"


@given(st.integers(1, 999_999), st.integers(1, 999_999))
def test_fractional_is_one_plus_the_fraction(num, den):
    price = 1 + Fraction(num, den)
    if price > odds.MAX_PRICE:
        return
    assert odds.from_fractional(f"{num}/{den}") == price
    assert odds.from_fractional(odds.to_fractional(price)) == price


@given(st.integers(100, 1_000_000))
def test_american_plus_and_minus_mirror_each_other(line):
    # +x pays x per 100 staked; -x needs x staked to win 100: their winnings are reciprocal.
    plus, minus = odds.from_american(f"+{line}") - 1, odds.from_american(f"-{line}") - 1
    assert plus * minus == 1


@given(st.decimals(min_value=Decimal("1.0001"), max_value=Decimal("1000"), places=4))
def test_decimal_text_round_trips_exactly(value):
    assert odds.from_decimal(str(value)) == Fraction(value)
