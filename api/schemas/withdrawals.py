"""Request and response bodies of /v1/withdrawals and /v1/players/{id}/payout_destinations.

The withdrawal resource is built by `commands.withdrawals.payload`, the same builder as every
`withdrawal.*` event's payload. Amounts are integers in minor units; no floats.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api.schemas.lists import ListPage
from api.schemas.text import Exact, ExactFields, not_blank
from workflows.contracts.withdrawal import (
    LegMethod,
    LegState,
    SecondFactorMethod,
    WithdrawalState,
)

DESTINATION = r"^[A-Za-z0-9_]+$"


class WithdrawalCreate(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    player_id: str = Field(min_length=1, max_length=64, pattern=not_blank())
    amount: StrictInt = Field(gt=0, le=10**12, description="Minor units (e.g. cents); an integer.")
    currency: Exact = Field(pattern=r"^[A-Z]{3}$")
    ip_address: IPv4Address | IPv6Address | None = Field(
        None, description="The player's IP address, checked against the geolocation on record.")
    payout_destination: Exact | None = Field(
        None, max_length=255, pattern=DESTINATION,
        description="Gateway bank account for the payout part: one recorded for the player "
                    "(POST /v1/players/{id}/payout_destinations). None: the account's default.")


class SecondFactorCodeIn(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Exact = Field(pattern=r"^[0-9]{6}$",
                        description="TOTP or the one-time code sent to the player.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class WithdrawalStep(BaseModel):
    step: str
    outcome: str
    detail: dict[str, Any]
    at: datetime


class WithdrawalLeg(BaseModel):
    """One leg of the closed-loop plan: a refund to a deposit, or the payout of the rest."""

    n: int
    method: LegMethod
    amount: int
    currency: str
    deposit_id: str | None
    state: LegState
    gateway_ref: str | None
    failure: str | None


class Withdrawal(BaseModel):
    id: str
    object: Literal["withdrawal"] = "withdrawal"
    state: WithdrawalState
    player_id: str
    amount: int
    currency: str
    paid_amount: int
    reason_code: str | None
    reason: str | None
    second_factor: SecondFactorMethod | None
    attempts_left: int | None
    created_at: datetime
    updated_at: datetime
    steps: list[WithdrawalStep] | None = None
    payouts: list[WithdrawalLeg] | None = None


class WithdrawalList(ListPage[Withdrawal]):
    """A page of withdrawals, newest first; each without its steps and legs (retrieve one for
    them)."""


class WithdrawalAfterCode(Withdrawal):
    second_factor_verified: bool


class PayoutDestinationIn(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    destination: Exact = Field(min_length=1, max_length=255, pattern=DESTINATION,
                               description="The gateway's id of the player's bank account.")


class PayoutDestination(BaseModel):
    object: Literal["payout_destination"] = "payout_destination"
    player_id: str
    destination: str
    created_at: datetime


class PayoutDestinationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PayoutDestination]
