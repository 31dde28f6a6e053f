"""The first gates: the player exists and is active, the currency is served, the deposit amount
is within the house's bounds. Cheap and certain, so they run before the others.
Must never: write anything.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from compliance.request import GateRequest, Operation
from settlepay.config import Settings
from store import players
from workflows.contracts.refusal import Refusal


def player_active(conn: Connection, settings: Settings, req: GateRequest,
                  now: datetime) -> Refusal | None:
    status = players.status(conn, req.player_id)
    if status is None:
        return Refusal("player_not_found", f"player {req.player_id} does not exist")
    if status != "active":
        return Refusal("player_not_active", f"player is {status}")
    return None


def currency_supported(conn: Connection, settings: Settings, req: GateRequest,
                       now: datetime) -> Refusal | None:
    if req.currency not in settings.supported_currencies:
        return Refusal("currency_not_supported", f"currency {req.currency} is not supported")
    return None


def deposit_amount_within_bounds(conn: Connection, settings: Settings, req: GateRequest,
                                 now: datetime) -> Refusal | None:
    if req.operation is not Operation.DEPOSIT:
        return None
    if req.amount < settings.deposit_min_minor:
        return Refusal("amount_below_minimum",
                       f"minimum deposit is {settings.deposit_min_minor} minor units")
    if req.amount > settings.deposit_max_minor:
        return Refusal("amount_above_maximum",
                       f"maximum deposit is {settings.deposit_max_minor} minor units")
    return None
