"""The gates every money path passes through (deposit, bet, withdrawal).

A gate is a function `(conn, settings, request) -> GateDecision | None`: None lets the request
through, a decision with `allowed=False` stops it with a named code and a reason the API shows
the player. Gates run in order inside the caller's database transaction, so a limit check and
the amount it counts commit together. Each capability adds its gates to `GATES` (KYC,
geolocation, responsible gaming, debt) in a module of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text

from settlepay.config import Settings


class Operation(StrEnum):
    DEPOSIT = "deposit"
    BET = "bet"
    WITHDRAWAL = "withdrawal"


@dataclass(frozen=True)
class GateRequest:
    player_id: str
    operation: Operation
    amount: int          # minor units
    currency: str
    ip_address: str | None = None


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    code: str            # e.g. player_not_found, currency_not_supported, amount_below_minimum
    reason: str

    @staticmethod
    def deny(code: str, reason: str) -> GateDecision:
        return GateDecision(False, code, reason)


ALLOWED = GateDecision(True, "allowed", "all checks passed")

Gate = Callable[[Connection, Settings, GateRequest], "GateDecision | None"]


def player_active(conn: Connection, settings: Settings, req: GateRequest) -> GateDecision | None:
    status = conn.execute(text("SELECT status FROM players WHERE id = :id"), {"id": req.player_id}).scalar()
    if status is None:
        return GateDecision.deny("player_not_found", f"player {req.player_id} does not exist")
    if status != "active":
        return GateDecision.deny("player_not_active", f"player is {status}")
    return None


def currency_supported(conn: Connection, settings: Settings, req: GateRequest) -> GateDecision | None:
    if req.currency not in settings.supported_currencies:
        return GateDecision.deny("currency_not_supported", f"currency {req.currency} is not supported")
    return None


def deposit_amount_within_bounds(conn: Connection, settings: Settings, req: GateRequest) -> GateDecision | None:
    if req.operation is not Operation.DEPOSIT:
        return None
    if req.amount < settings.deposit_min_minor:
        return GateDecision.deny("amount_below_minimum", f"minimum deposit is {settings.deposit_min_minor} minor units")
    if req.amount > settings.deposit_max_minor:
        return GateDecision.deny("amount_above_maximum", f"maximum deposit is {settings.deposit_max_minor} minor units")
    return None


# Order matters: cheap, certain checks first. Later capabilities append their gates here
# (geolocation, responsible gaming, KYC, open debt).
GATES: list[Gate] = [player_active, currency_supported, deposit_amount_within_bounds]


def check(conn: Connection, settings: Settings, req: GateRequest) -> GateDecision:
    for gate in GATES:
        decision = gate(conn, settings, req)
        if decision is not None and not decision.allowed:
            return decision
    return ALLOWED
