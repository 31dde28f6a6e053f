"""The result of one selection, as Sportradar's Unified Odds Feed states it.

UOF settles an outcome with `result` (1 won, 0 lost), a `void_factor` (the share of the stake
refunded: 0, 0.5 or 1) and a `dead_heat_factor` (the share of the stake that wins when
runners tie). Read together:

    won                     result=won,  void_factor=0
    lost                    result=lost, void_factor=0
    void / push             void_factor=1 (the result does not matter)
    half won  (Asian -0.25) result=won,  void_factor=1/2   half wins, half is refunded
    half lost (Asian +0.25) result=lost, void_factor=1/2   half loses, half is refunded
    dead heat               result=won,  dead_heat_factor=1/k  stake/k wins at full odds

A void (whole or half) may carry UOF's `void_reason` code, kept with every bet it settles.
Racing adds two things UOF carries in separate messages: the finishing `position` (with how
many runners `tied` on it) for each-way place terms, and a Rule 4 deduction (pence in the
pound taken off the winnings when a runner is withdrawn late).

Factors are exact Fractions; JSON gives them as strings ("0.5", "1/3"), never floats.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any


class Outcome(StrEnum):
    WON = "won"
    LOST = "lost"


VOID_FACTORS = frozenset({Fraction(0), Fraction(1, 2), Fraction(1)})
# Tattersalls' Rule 4 table stops at 90p in the pound (75p for a single withdrawal; several
# withdrawals add up but never beyond 90p).
MAX_RULE4 = Fraction(9, 10)


class InvalidResult(ValueError):
    """A selection result that cannot be settled (bad factor, bad position)."""


def exact(value: Any, name: str) -> Fraction:
    """A factor given as int, str ("0.5", "1/3"), Decimal or Fraction; never a float."""
    if isinstance(value, float):
        raise InvalidResult(f"{name} must not be a float: send it as a string such as \"0.5\"")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (int, Decimal)):
        return Fraction(value)
    try:
        return Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError) as error:
        raise InvalidResult(f"{name}: {value!r} is not a number") from error


@dataclass(frozen=True)
class SelectionResult:
    result: Outcome
    void_factor: Fraction = Fraction(0)
    dead_heat_factor: Fraction = Fraction(1)
    position: int | None = None        # finishing position (racing), for each-way places
    tied: int = 1                      # runners sharing that position (dead heat for a place)
    rule4: Fraction = Fraction(0)      # deduction per unit of winnings
    void_reason: str | None = None     # why it is void (UOF void_reason), kept with the bets

    def __post_init__(self) -> None:
        object.__setattr__(self, "result", Outcome(self.result))
        for name in ("void_factor", "dead_heat_factor", "rule4"):
            object.__setattr__(self, name, exact(getattr(self, name), name))
        if self.void_factor not in VOID_FACTORS:
            raise InvalidResult("void_factor must be 0, 0.5 or 1")
        if not 0 < self.dead_heat_factor <= 1:
            raise InvalidResult("dead_heat_factor must be in (0, 1]")
        if not 0 <= self.rule4 <= MAX_RULE4:
            raise InvalidResult("rule4 must be between 0 and 0.90")
        if self.position is not None and self.position < 1:
            raise InvalidResult("position starts at 1")
        if self.tied < 1:
            raise InvalidResult("tied counts runners: at least 1")
        if self.void_reason is not None and self.void_factor == 0:
            raise InvalidResult("a void_reason belongs to a void (void_factor above 0)")

    @property
    def won(self) -> bool:
        return self.result is Outcome.WON

    @staticmethod
    def from_json(data: dict[str, Any]) -> SelectionResult:
        return SelectionResult(
            result=Outcome(data["result"]),
            void_factor=exact(data.get("void_factor", 0), "void_factor"),
            dead_heat_factor=exact(data.get("dead_heat_factor", 1), "dead_heat_factor"),
            position=data.get("position"),
            tied=int(data.get("tied", 1)),
            rule4=exact(data.get("rule4", 0), "rule4"),
            void_reason=None if data.get("void_reason") is None else str(data["void_reason"]),
        )

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (factors as strings) for storage; from_json(to_json(r)) == r."""
        data: dict[str, Any] = {"result": str(self.result), "void_factor": str(self.void_factor),
                                "dead_heat_factor": str(self.dead_heat_factor)}
        if self.position is not None:
            data["position"] = self.position
        if self.tied != 1:
            data["tied"] = self.tied
        if self.rule4:
            data["rule4"] = str(self.rule4)
        if self.void_reason is not None:
            data["void_reason"] = self.void_reason
        return data
