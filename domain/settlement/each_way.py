"""Each-way place terms: an each-way bet is two bets of equal stake, one to win and one to be
placed; the place bet is paid at a fraction of the win odds if the runner finishes within the
first `places`.

Standard UK terms by number of runners (as published by the major UK bookmakers):

    2-4 runners                      win only (no place part offered)
    5-7 runners                      1/4 the odds, 2 places
    8+ runners, non-handicap         1/5 the odds, 3 places
    8-11 runners, handicap           1/5 the odds, 3 places
    12-15 runners, handicap          1/4 the odds, 3 places
    16+ runners, handicap            1/4 the odds, 4 places

The terms are fixed when the bet is struck and stored with it; this module only proposes the
standard ones. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class PlaceTerms:
    fraction: Fraction   # share of the win odds' winnings paid for a place (1/4, 1/5)
    places: int          # positions that count as placed

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", Fraction(self.fraction))
        if not 0 < self.fraction <= 1:
            raise ValueError("place fraction must be in (0, 1]")
        if self.places < 1:
            raise ValueError("at least one place")

    def place_price(self, price: Fraction) -> Fraction:
        """The decimal price of the place part: 10/1 at 1/5 odds places at 2/1 (3.00)."""
        return 1 + (price - 1) * self.fraction

    def placed_share(self, position: int, tied: int) -> Fraction:
        """The share of the place stake that is placed when `tied` runners share `position`.

        Tied runners occupy positions position .. position+tied-1; the ones inside the paying
        places split them (a dead heat for the last place pays half the stake each).
        """
        paying = max(0, min(tied, self.places - position + 1))
        return Fraction(paying, tied)


def standard_place_terms(runners: int, handicap: bool = False) -> PlaceTerms | None:
    """The standard terms for a race, or None when no each-way betting is offered."""
    if runners < 5:
        return None
    if runners <= 7:
        return PlaceTerms(Fraction(1, 4), 2)
    if not handicap or runners <= 11:
        return PlaceTerms(Fraction(1, 5), 3)
    if runners <= 15:
        return PlaceTerms(Fraction(1, 4), 3)
    return PlaceTerms(Fraction(1, 4), 4)
