"""Request and response bodies of /v1/bets (Stripe-like resources: `object`, `id`).

Amounts are integers in minor units; odds are strings as offered (never JSON numbers); exact
prices are fractions as text ("5/2"). The response is built by `commands.bets.bet_resource`,
the same builder as the `bet.placed` / `bet.rejected` event payloads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from api.schemas.lists import ListPage

ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"   # never "/": the internal id is <partner>/<bet id>


class LegIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    market_id: str = Field(min_length=1, max_length=128, pattern=ID)
    selection_id: str = Field(min_length=1, max_length=128, pattern=ID)
    odds: StrictStr = Field(min_length=1, max_length=16,
                            description='As offered, as a string: "2.50", "10/1", "+150" '
                                        "(never a JSON number).")
    odds_format: Literal["decimal", "fractional", "american"] | None = None


class EachWayTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    place_fraction: StrictStr = Field(pattern=r"^\d{1,2}/\d{1,2}$", description='e.g. "1/5"')
    places: StrictInt = Field(ge=1, le=10)


class BetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=ID,
                    description="The betting engine's bet id, unique per partner.")
    player_id: str = Field(min_length=1, max_length=128)
    stake: StrictInt = Field(gt=0, le=10**12,
                             description="Minor units; each-way: both parts together.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    bet_type: Literal["single", "parlay", "each_way"]
    legs: list[LegIn] = Field(min_length=1, max_length=20)
    each_way: EachWayTerms | None = None
    ip_address: str | None = Field(None, max_length=45,
                                   description="The player's IP, for the geolocation gate.")


class BetLeg(BaseModel):
    leg_no: int
    market_id: str
    selection_id: str
    odds: str = Field(description="As offered.")
    odds_format: Literal["decimal", "fractional", "american"]
    price: str = Field(description='The exact decimal price as a fraction, e.g. "5/2".')


class EachWay(BaseModel):
    place_fraction: str = Field(description='Share of the odds paid for a place, e.g. "1/5".')
    places: int


class BetSettlement(BaseModel):
    """One version of the bet's settlement (kept forever)."""

    kind: Literal["settlement", "resettlement", "rollback"]
    version: int
    market_id: str = Field(description="The market whose result (or rollback) triggered it.")
    payout: int = Field(description="What these results return, minor units (rollback: 0).")
    delta: int = Field(description="Moved to (+) or from (-) the player, minor units.")
    applied: bool = Field(description="False: upgrade_only kept a downgrade out.")
    outcome: str
    ledger_key: str | None
    shortfall: int = Field(description="Clawback part that became player debt.")
    results: dict[str, Any] = Field(description="The leg results used.")
    created_at: datetime


class Bet(BaseModel):
    object: Literal["bet"] = "bet"
    id: str = Field(description="The betting engine's bet id.")
    partner_id: str
    player_id: str
    currency: str
    stake: int
    bet_type: Literal["single", "parlay", "each_way"]
    each_way: EachWay | None
    status: Literal["open", "settled", "rejected"]
    reject_code: str | None
    reject_reason: str | None
    paid: int = Field(description="Net returned to the player by settlements, minor units.")
    payout: int | None = Field(description="The return under the current results.")
    version: int | None = Field(description="Settlement version of `paid`.")
    placed_at: datetime
    settled_at: datetime | None
    updated_at: datetime
    legs: list[BetLeg]
    settlements: list[BetSettlement]


class BetList(ListPage[Bet]):
    """A page of bets, newest first."""
