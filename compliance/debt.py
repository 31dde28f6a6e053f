"""The open-debt gate: a player who owes money (player_debt balance below zero, e.g. after a
resettlement clawback) cannot withdraw until the debt is repaid.

Must never: move money (repaying a debt is a ledger transfer elsewhere).
"""

from __future__ import annotations

from sqlalchemy import Connection

import ledger
from compliance.gates import GateDecision, GateRequest, Operation
from ledger import AccountType
from settlepay.config import Settings


def debt_gate(conn: Connection, settings: Settings, req: GateRequest) -> GateDecision | None:
    if req.operation is not Operation.WITHDRAWAL:
        return None
    # Any open debt blocks, whatever the currency of the withdrawal: the money owed is settled
    # first (the operator decides how), never netted silently against another currency.
    for account in ledger.balances(conn, f"player:{req.player_id}"):
        if account.account.type is AccountType.PLAYER_DEBT and account.posted < 0:
            return GateDecision.deny(
                "open_debt", f"the player owes {-account.posted} {account.account.currency} minor units")
    return None
