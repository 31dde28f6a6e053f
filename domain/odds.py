"""Odds in the three formats bettors see, turned into one exact number: the decimal price.

The decimal price is what one unit staked returns when the selection wins, stake included
(2.50 returns 2.50 per 1 staked). Every format converts to an exact `fractions.Fraction`:

    decimal      "2.50"       -> 5/2
    fractional   "10/1"       -> 1 + 10/1  = 11
    American     "+150"       -> 1 + 150/100 = 5/2        "-200" -> 1 + 100/200 = 3/2

This module must never use floats (a float cannot hold 1.1 exactly) and never does I/O.
Floats are refused outright, so a caller cannot smuggle rounding in.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction


class OddsFormat(StrEnum):
    DECIMAL = "decimal"
    FRACTIONAL = "fractional"
    AMERICAN = "american"


class InvalidOdds(ValueError):
    """The odds text is not a valid price in the named (or detected) format."""


# A price at or below 1.00 returns no winnings: no sportsbook offers it.
MIN_PRICE_EXCLUSIVE = Fraction(1)
# Ridiculous prices are typos; refusing them protects the house and the player.
MAX_PRICE = Fraction(100_001)

_DECIMAL = re.compile(r"^\d{1,6}(\.\d{1,4})?$")
_FRACTIONAL = re.compile(r"^(\d{1,6})\s*/\s*(\d{1,6})$")
_AMERICAN = re.compile(r"^([+-]?)(\d{3,7})$")


def from_decimal(value: str | Decimal | int) -> Fraction:
    if isinstance(value, float):
        raise TypeError("odds must not be floats: pass the decimal price as a string")
    text = str(value).strip()
    if not _DECIMAL.match(text):
        raise InvalidOdds(f"{text!r} is not a decimal price such as 2.50")
    try:
        price = Fraction(Decimal(text))
    except InvalidOperation as error:  # pragma: no cover - the regex already checked
        raise InvalidOdds(f"{text!r} is not a decimal price") from error
    return _checked(price, text)


def from_fractional(value: str) -> Fraction:
    text = str(value).strip()
    match = _FRACTIONAL.match(text)
    if not match:
        raise InvalidOdds(f"{text!r} is not a fractional price such as 10/1")
    numerator, denominator = int(match[1]), int(match[2])
    if denominator == 0 or numerator == 0:
        raise InvalidOdds(f"{text!r}: both sides of a fractional price must be positive")
    return _checked(1 + Fraction(numerator, denominator), text)


def from_american(value: str | int) -> Fraction:
    if isinstance(value, float):
        raise TypeError("odds must not be floats")
    text = str(value).strip()
    match = _AMERICAN.match(text)
    if not match:
        raise InvalidOdds(f"{text!r} is not an American price such as +150 or -200")
    line = int(match[2])
    if line < 100:
        raise InvalidOdds(f"{text!r}: American prices are at least 100 either side")
    if match[1] != "-":   # an unsigned American line is a plus line
        return _checked(1 + Fraction(line, 100), text)
    return _checked(1 + Fraction(100, line), text)


def detect_format(text: str) -> OddsFormat:
    text = text.strip()
    if "/" in text:
        return OddsFormat.FRACTIONAL
    if text[:1] in "+-":
        return OddsFormat.AMERICAN
    return OddsFormat.DECIMAL


def parse(text: str, odds_format: OddsFormat | str | None = None) -> Fraction:
    """The decimal price of `text`, in `odds_format` or the format its shape shows."""
    if isinstance(text, float):
        raise TypeError("odds must not be floats: send them as a string")
    text = str(text)
    fmt = OddsFormat(odds_format) if odds_format else detect_format(text)
    if fmt is OddsFormat.DECIMAL:
        return from_decimal(text)
    if fmt is OddsFormat.FRACTIONAL:
        return from_fractional(text)
    return from_american(text)


def _checked(price: Fraction, text: str) -> Fraction:
    if price <= MIN_PRICE_EXCLUSIVE:
        raise InvalidOdds(f"{text!r}: a price must be above 1.00")
    if price > MAX_PRICE:
        raise InvalidOdds(f"{text!r}: price above {MAX_PRICE}")
    return price


def to_fractional(price: Fraction) -> str:
    """The fractional display of a decimal price (11 -> "10/1")."""
    winnings = price - 1
    return f"{winnings.numerator}/{winnings.denominator}"
