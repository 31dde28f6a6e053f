"""Settlement maths: what a bet returns given its selections' results. Pure: no I/O, no clock.

    results.py   the result of one selection (Sportradar UOF model: result, void_factor,
                 dead_heat_factor; plus finishing position for each-way place terms and a
                 Rule 4 deduction)
    each_way.py  standard each-way place terms (fraction of the odds, places by runners)
    payout.py    settle(bet, results) -> Settled | Pending: singles, parlays, each-way

The rounding rule (one place, stated once): every multiplication is exact (Fraction); the
bet's total return is rounded DOWN to the minor unit once, at the very end. A player is never
paid a fraction of a cent that was not won, and every bet is rounded exactly once, so
resettling a bet recomputes exactly the same integer from the same results.
"""

from domain.settlement.each_way import PlaceTerms, standard_place_terms
from domain.settlement.payout import (
    Bet,
    BetOutcome,
    BetType,
    Leg,
    LegOutcome,
    Pending,
    Settled,
    UnitReturn,
    check_stake,
    leg_factor,
    max_payout,
    max_return,
    settle,
    unit_return,
)
from domain.settlement.results import Outcome, SelectionResult

__all__ = [
    "Bet", "BetOutcome", "BetType", "Leg", "LegOutcome", "Outcome", "Pending", "PlaceTerms",
    "SelectionResult", "Settled", "UnitReturn", "check_stake", "leg_factor", "max_payout",
    "max_return", "settle", "standard_place_terms", "unit_return",
]
