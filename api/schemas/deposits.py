"""Request and response bodies of /v1/deposits.

The deposit resource is built by `commands.deposits.deposit_payload`, the same builder as every
`deposit.*` event's payload. Amounts are integers in minor units; no floats.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api.schemas.lists import ListPage
from api.schemas.text import HTTP_URL, Exact, ExactFields, not_blank
from workflows.contracts.deposit import DepositStatus, ReviewReason


class DepositCreate(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    player_id: str = Field(min_length=1, max_length=64, pattern=not_blank())
    amount: StrictInt = Field(gt=0, le=10**12, description="Minor units (e.g. cents); an integer.")
    currency: Exact = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, upper case.")
    payment_method: Exact = Field(min_length=3, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$",
                                  description="Gateway payment method id (test: pm_card_visa).")
    ip_address: IPv4Address | IPv6Address | None = Field(
        None, description="The player's IP address, checked against the geolocation on record.")
    return_url: Exact | None = Field(None, max_length=2048, pattern=HTTP_URL,
                                     description="Where the player returns after 3-D Secure.")


class DepositReviewClose(BaseModel):
    """An operator's decision on a deposit in review. Only closing it as failed is offered:
    a deposit is credited on the gateway's verdict alone (a late webhook, reconciliation)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Literal["fail"] = Field(description="fail: no money moved at the gateway; the "
                                                  "deposit fails with `closed_in_review`.")
    reason: str = Field(min_length=1, max_length=500, pattern=not_blank(),
                        description="What the operator found (kept as the failure reason and "
                                    "in the audit log).")


class GatewayRefs(BaseModel):
    provider: str
    payment_intent: str | None
    charge: str | None


class Deposit(BaseModel):
    object: Literal["deposit"] = "deposit"
    id: str
    status: DepositStatus = Field(
        description="review: the gateway gave no verdict in time and an operator looks at it; "
                    "succeeded and failed are final.")
    player_id: str
    amount: int
    currency: str
    payment_method: str
    failure_code: str | None
    failure_reason: str | None
    review_code: ReviewReason | None = Field(description="Why the deposit is in review.")
    review_reason: str | None
    next_action: dict[str, Any] | None = Field(
        description="For requires_action: where to send the player (3-D Secure).")
    gateway: GatewayRefs
    ledger_transaction_id: int | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None
    failed_at: datetime | None


class DepositList(ListPage[Deposit]):
    """A page of deposits, newest first."""
