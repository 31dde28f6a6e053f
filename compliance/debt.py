"""The open-debt gate: a player who owes money (player_debt balance below zero, e.g. after a
resettlement clawback) cannot withdraw until the debt is repaid.

Must never: move money (repaying a debt is a ledger transfer elsewhere).
"""

from __future__ import annotations

from sqlalchemy import Connection

import ledger
from compliance.gates import GateDecision, GateRequest, Operation
from ledger import AccountRef
from settlepay.config import Settings


def debt_gate(conn: Connection, settings: Settings, req: GateRequest) -> GateDecision | None:
    if req.operation is not Operation.WITHDRAWAL:
        return None
    owed = -ledger.balance(conn, AccountRef.player_debt(req.player_id, req.currency)).posted
    if owed > 0:
        return GateDecision.deny("open_debt", f"the player owes {owed} {req.currency} minor units")
    return None
