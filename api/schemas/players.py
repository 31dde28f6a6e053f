"""Request and response bodies of /v1/players (Stripe-like resources: `object`, `id`).

`Player` is the player resource, built by `commands.players.player_payload` (the same builder
feeds the `player.created` event). Amounts are integers in minor units, per currency; no floats.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.lists import ListPage
from api.schemas.text import WHITE_SPACE, Exact, ExactFields, not_blank

# No white space of either regex dialect, nor the C0 separators Python's \s counts and ECMA-262's
# does not: the class is spelled out, so /docs and the API refuse the same addresses.
_MAILBOX = rf"[^@{WHITE_SPACE}\ufeff\x1c-\x1f]+"
EMAIL = rf"^{_MAILBOX}@{_MAILBOX}\.{_MAILBOX}$"


class PlayerCreate(ExactFields):
    # Unknown fields are refused (422), as Stripe refuses unknown parameters: a typo in an
    # optional field must not pass silently.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    partner_id: Exact | None = Field(None, min_length=1, max_length=64,
                                     pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                     description="Required for operator keys; partner keys may "
                                                 "omit it (it must be their own partner).")
    external_ref: str | None = Field(None, min_length=1, max_length=128, pattern=not_blank(),
                                     description="The partner's own id for the player; "
                                                 "unique per partner.")
    first_name: str = Field(min_length=1, max_length=100, pattern=not_blank())
    last_name: str = Field(min_length=1, max_length=100, pattern=not_blank())
    email: Exact | None = Field(None, max_length=254, pattern=EMAIL)
    date_of_birth: date | None = None
    jurisdiction: Exact | None = Field(None, pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$",
                                       description="ISO 3166-1/-2 code, e.g. US-NJ.")


class CurrencyBalance(BaseModel):
    """A player's money in one currency, in minor units."""

    currency: str
    cash: int = Field(description="Posted balance of the player's cash account.")
    held: int = Field(description="Cash reserved by holds in flight (counts against available).")
    available: int = Field(description="What the player can bet or withdraw now: cash - held.")
    pending_withdrawal: int = Field(description="Moved out of cash for withdrawals in flight.")
    bets_in_play: int = Field(description="Stakes of open bets.")
    debt: int = Field(description="What the player owes (clawbacks cash could not cover); >= 0.")


class KycHistoryEntry(BaseModel):
    state: str
    step: str
    detail: dict[str, Any]
    at: datetime


class KycStatus(BaseModel):
    status: Literal["not_started", "pending", "review", "documents", "resubmission_required",
                    "verified", "rejected", "expired"]
    reason_code: str | None = None
    verified_at: datetime | None = None
    history: list[KycHistoryEntry] = Field(default_factory=list)


class Player(BaseModel):
    object: Literal["player"] = "player"
    id: str
    partner_id: str
    external_ref: str | None
    status: Literal["active", "suspended", "closed"]
    first_name: str
    last_name: str
    email: str | None
    date_of_birth: date | None
    jurisdiction: str | None
    created_at: datetime
    updated_at: datetime
    balances: list[CurrencyBalance] = Field(default_factory=list)
    kyc: KycStatus | None = Field(None, description="KYC status and its history (store/kyc.py).")


PlayerStatus = Literal["active", "suspended", "closed"]


class PlayerList(ListPage[Player]):
    """A page of players, newest first (GET /v1/players)."""
