"""The open-debt gate: a player who owes money (player_debt balance below zero, e.g. after a
resettlement clawback) cannot withdraw until the debt is repaid.

Must never: move money (repaying a debt is a ledger transfer elsewhere).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

import ledger
from compliance.request import GateRequest, Operation
from ledger import AccountType
from settlepay.config import Settings
from workflows.contracts.refusal import Refusal


def debt_gate(conn: Connection, settings: Settings, req: GateRequest,
              now: datetime) -> Refusal | None:
    if req.operation is not Operation.WITHDRAWAL:
        return None
    # Any open debt blocks, whatever the currency of the withdrawal: the money owed is settled
    # first (the operator decides how), never netted silently against another currency.
    for account in ledger.balances(conn, f"player:{req.player_id}"):
        if account.account.type is AccountType.PLAYER_DEBT and account.posted < 0:
            return Refusal("open_debt", f"the player owes {-account.posted} "
                                        f"{account.account.currency} minor units")
    return None
