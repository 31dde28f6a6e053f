"""What a bet returns (stake included) given its selections' results.

Per leg, one unit staked returns its *leg factor*:

    factor = void_factor                                  (the refunded share)
           + (1 - void_factor) * won * dead_heat_factor * price_after_rule4

    price_after_rule4 = 1 + (price - 1) * (1 - rule4)     (Rule 4 comes off winnings only)

so a winner returns its price, a loser 0, a void or push 1 (odds 1.00), a half win
(1 + price) / 2, a half loss 1/2, and a two-way dead heat price / 2.

    single     return = stake * factor
    parlay     return = stake * product of the leg factors: a void or pushed leg counts at
               1.00, any lost leg makes the product 0; it settles only when every leg has a
               result (otherwise `Pending`, naming the legs still waiting)
    each-way   two bets of stake/2: the win part as a single, the place part at the place
               price (PlaceTerms) if the runner finished within the places (a dead heat for the
               last place splits the place stake); Rule 4 applies to both parts

Rounding: all of the above is exact (Fraction); the total return is rounded DOWN to the minor
unit once, at the end (`floor`). Never uses floats, never does I/O, never reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from domain.settlement.each_way import PlaceTerms
from domain.settlement.results import SelectionResult


class BetType(StrEnum):
    SINGLE = "single"
    PARLAY = "parlay"          # also called an accumulator
    EACH_WAY = "each_way"


class LegOutcome(StrEnum):
    """How one leg ended, in the words a bet history shows."""
    WON = "won"
    LOST = "lost"
    VOID = "void"              # void or push: stake back, odds 1.00
    HALF_WON = "half_won"
    HALF_LOST = "half_lost"
    DEAD_HEAT = "dead_heat"
    PENDING = "pending"


class BetOutcome(StrEnum):
    WON = "won"                # returns more than the stake
    LOST = "lost"              # returns nothing
    VOID = "void"              # returns exactly the stake
    PARTIAL = "partial"        # returns part of the stake (half lost, each-way placed only...)


@dataclass(frozen=True)
class Leg:
    market_id: str
    selection_id: str
    price: Fraction            # decimal price, exact (domain.odds)


def check_stake(bet_type: BetType | str, stake: int) -> None:
    """A stake is a positive integer of minor units; an each-way stake is even (two equal
    parts). ValueError otherwise."""
    if isinstance(stake, bool) or not isinstance(stake, int) or stake <= 0:
        raise ValueError("stake must be a positive integer of minor units")
    if bet_type == BetType.EACH_WAY and stake % 2:
        raise ValueError("an each-way stake is two equal parts: it must be even")


@dataclass(frozen=True)
class Bet:
    bet_type: BetType
    stake: int                 # minor units, the whole amount staked (each-way: both parts)
    legs: tuple[Leg, ...]
    place_terms: PlaceTerms | None = None   # each-way only

    def __post_init__(self) -> None:
        object.__setattr__(self, "bet_type", BetType(self.bet_type))
        check_stake(self.bet_type, self.stake)
        if not self.legs:
            raise ValueError("a bet has at least one leg")
        if self.bet_type is BetType.PARLAY:
            if len(self.legs) < 2:
                raise ValueError("a parlay has at least two legs")
            if len({leg.market_id for leg in self.legs}) != len(self.legs):
                raise ValueError("a parlay takes one selection per market")
        elif len(self.legs) != 1:
            raise ValueError(f"a {self.bet_type} bet has exactly one leg")
        if self.bet_type is BetType.EACH_WAY:
            if self.place_terms is None:
                raise ValueError("an each-way bet needs place terms")
        elif self.place_terms is not None:
            raise ValueError("place terms belong to each-way bets only")

    @property
    def markets(self) -> frozenset[str]:
        return frozenset(leg.market_id for leg in self.legs)


@dataclass(frozen=True)
class Settled:
    payout: int                         # total return in minor units, rounded down
    exact_return: Fraction              # before rounding (for audit and tests)
    outcome: BetOutcome
    legs: tuple[LegOutcome, ...]


@dataclass(frozen=True)
class Pending:
    waiting_for: tuple[str, ...]        # market ids without a result yet


Results = Mapping[tuple[str, str], SelectionResult]   # (market_id, selection_id) -> result


def price_after_rule4(price: Fraction, rule4: Fraction) -> Fraction:
    return 1 + (price - 1) * (1 - rule4)


def leg_factor(price: Fraction, result: SelectionResult) -> Fraction:
    """What one unit staked on this leg returns (see the module docstring)."""
    refunded = result.void_factor
    if not result.won:
        return refunded
    won = result.dead_heat_factor * price_after_rule4(price, result.rule4)
    return refunded + (1 - refunded) * won


def place_factor(price: Fraction, result: SelectionResult, terms: PlaceTerms) -> Fraction:
    """What one unit staked on the place part returns."""
    refunded = result.void_factor
    if refunded == 1:
        return Fraction(1)
    if result.position is None:
        # No finishing order given: a winner is placed (sharing as in its win dead heat),
        # a loser is treated as unplaced. Racing feeds always send positions for placed runners.
        share = result.dead_heat_factor if result.won else Fraction(0)
    else:
        share = terms.placed_share(result.position, result.tied)
    place_price = price_after_rule4(terms.place_price(price), result.rule4)
    return refunded + (1 - refunded) * share * place_price


HALF = Fraction(1, 2)


def classify(result: SelectionResult) -> LegOutcome:
    if result.void_factor == 1:
        return LegOutcome.VOID
    if result.void_factor == HALF:
        return LegOutcome.HALF_WON if result.won else LegOutcome.HALF_LOST
    if not result.won:
        return LegOutcome.LOST
    return LegOutcome.DEAD_HEAT if result.dead_heat_factor < 1 else LegOutcome.WON


@dataclass(frozen=True)
class UnitReturn:
    """What one unit staked on a bet's legs returns under some results (exact), and how each
    leg ended: every bet of the same type, legs, prices and place terms returns its stake
    times `factor`."""
    factor: Fraction
    legs: tuple[LegOutcome, ...]

    def at(self, stake: int) -> Settled:
        """The settlement of `stake` staked: the exact return rounded down once. In integers
        (the hot path of a batch): return / stake = factor = num / den, so the outcome is
        num against den."""
        num, den = self.factor.numerator, self.factor.denominator
        payout = stake * num // den
        if num == 0:
            outcome = BetOutcome.LOST
        elif num == den:
            outcome = BetOutcome.VOID
        else:
            outcome = BetOutcome.WON if num > den else BetOutcome.PARTIAL
        return Settled(payout=payout, exact_return=Fraction(stake * num, den), outcome=outcome,
                       legs=self.legs)


def unit_return(bet: Bet, results: Results) -> UnitReturn | Pending:
    """What one unit staked on `bet`'s legs returns (its stake aside), or which markets it
    still waits for. An each-way unit is half on the win part, half on the place part."""
    missing = tuple(sorted({leg.market_id for leg in bet.legs
                            if (leg.market_id, leg.selection_id) not in results}))
    if missing:
        return Pending(missing)
    leg_results = [results[(leg.market_id, leg.selection_id)] for leg in bet.legs]

    if bet.bet_type is BetType.EACH_WAY:
        leg, result = bet.legs[0], leg_results[0]
        assert bet.place_terms is not None
        factor = (leg_factor(leg.price, result)
                  + place_factor(leg.price, result, bet.place_terms)) / 2
    else:
        factor = Fraction(1)
        for leg, result in zip(bet.legs, leg_results, strict=True):
            factor *= leg_factor(leg.price, result)
    return UnitReturn(factor, tuple(classify(r) for r in leg_results))


def settle(bet: Bet, results: Results) -> Settled | Pending:
    """Settle `bet` against `results`, or say which markets it still waits for."""
    unit = unit_return(bet, results)
    return unit if isinstance(unit, Pending) else unit.at(bet.stake)


def max_return(bet: Bet) -> Fraction:
    """The largest exact return any results can give `bet` (every leg won outright).

    No result returns more per unit than the leg's price: a void returns 1, a half win
    (1 + price) / 2, a dead heat or Rule 4 less than the price, and a place part at most its
    place price. So a single returns at most stake * price, a parlay stake * the product of
    its prices, an each-way bet half the stake at the price plus half at the place price.
    """
    if bet.bet_type is BetType.EACH_WAY:
        assert bet.place_terms is not None
        price = bet.legs[0].price
        return Fraction(bet.stake, 2) * (price + bet.place_terms.place_price(price))
    factor = Fraction(1)
    for leg in bet.legs:
        factor *= leg.price
    return bet.stake * factor


def max_payout(bet: Bet) -> int:
    """The largest payout (minor units, rounded down as `settle` rounds) `bet` can ever get."""
    return math.floor(max_return(bet))


def _outcome(payout: int, exact_return: Fraction, stake: int) -> BetOutcome:
    if exact_return == 0:
        return BetOutcome.LOST
    if exact_return == stake:
        return BetOutcome.VOID
    return BetOutcome.WON if exact_return > stake else BetOutcome.PARTIAL
