"""What a gate is asked (`GateRequest`) and what `compliance.gates.check` answers (`GateDecision`).

A gate is a function `(conn, settings, request, now) -> Refusal | None`: None lets the request
through, a `Refusal(code, reason)` stops it with a stable code and the sentence shown to the
partner. Gates only read (in the caller's transaction) and decide; they never write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection

from settlepay.config import Settings
from workflows.contracts.refusal import Refusal


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
    ip_address: str | None = None     # None: a server-side flow, the IP comparison is skipped
    # The deposit being gated: its own reservation is not counted against its limits, so a
    # retried gate check of the same deposit answers as the first did (issue 9, item 10).
    deposit_id: str | None = None


Gate = Callable[[Connection, Settings, GateRequest, datetime], Refusal | None]


@dataclass(frozen=True)
class GateDecision:
    """The answer of `compliance.gates.check`: allowed, or the first gate's refusal."""

    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    @property
    def code(self) -> str:
        return "allowed" if self.refusal is None else self.refusal.code

    @property
    def reason(self) -> str:
        return "all checks passed" if self.refusal is None else self.refusal.reason

    @staticmethod
    def deny(code: str, reason: str) -> GateDecision:
        return GateDecision(Refusal(code, reason))


ALLOWED = GateDecision()
