"""The gates every money path passes through (deposit, bet, withdrawal), in their one order.

    decision = gates.check(conn, settings, GateRequest(player_id, Operation.DEPOSIT, 5_000, "USD"))
    if not decision.allowed: ... decision.refusal  # Refusal(code, reason)

A gate is `(conn, settings, request, now) -> Refusal | None` (see `compliance.request`). They
run in the order of `GATES` inside the caller's database transaction, so a limit check and the
amount it counts commit together; the first refusal wins. Cheap, certain checks come first.
A new gate is one line in `GATES`, here and nowhere else.
Must never: write anything (audit, outbox and reservations are `commands/`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection

from compliance.core import currency_supported, deposit_amount_within_bounds, player_active
from compliance.debt import debt_gate
from compliance.geolocation import geolocation_gate
from compliance.kyc import kyc_gate
from compliance.limits import deposit_limit_gate, exclusion_gate
from compliance.request import ALLOWED, Gate, GateDecision, GateRequest, Operation
from settlepay.config import Settings

__all__ = ["ALLOWED", "GATES", "Gate", "GateDecision", "GateRequest", "Operation", "check"]

GATES: tuple[Gate, ...] = (
    player_active,                 # the player exists and is active
    currency_supported,            # a currency the house serves
    deposit_amount_within_bounds,  # deposits: the house's minimum and maximum
    exclusion_gate,                # deposits and bets: no self-exclusion or time-out in force
    geolocation_gate,              # a valid location check on record (and the same IP)
    deposit_limit_gate,            # deposits: advisory, the reservation decides (commands.limits)
    kyc_gate,                      # withdrawals: identity verified
    debt_gate,                     # withdrawals: no open debt
)


def check(conn: Connection, settings: Settings, req: GateRequest, *,
          now: datetime | None = None, gates: Sequence[Gate] = GATES) -> GateDecision:
    """Run `gates` (all of them unless a test narrows them) in order; the first refusal wins."""
    now = now or datetime.now(UTC)
    for gate in gates:
        refusal = gate(conn, settings, req, now)
        if refusal is not None:
            return GateDecision(refusal)
    return ALLOWED
