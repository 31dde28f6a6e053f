"""The KYC gate: a withdrawal needs a verified identity.

Only withdrawals are gated here: deposits and bets of an unverified player are the partner's
KYC-level policy (not in this gate). Must never: start or change a KYC case.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from compliance.request import GateRequest, Operation
from settlepay.config import Settings
from store import kyc
from workflows.contracts.refusal import Refusal


def kyc_gate(conn: Connection, settings: Settings, req: GateRequest,
             now: datetime) -> Refusal | None:
    if req.operation is not Operation.WITHDRAWAL:
        return None
    case = kyc.get(conn, req.player_id)
    if case is None:
        return Refusal("kyc_not_verified", "identity not verified: no KYC check on record")
    if case["state"] != kyc.VERIFIED:
        return Refusal("kyc_not_verified", f"identity not verified: KYC is {case['state']}")
    return None
