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
    funding: Literal["cash", "free_bet"] = Field(
        "cash", description="cash: player cash and bonus funds (in the configured stake "
                            "order); free_bet: the player's free-bet balance (pays winnings "
                            "only; a void gives the free bet back).")


class CashOutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quote_id: str = Field(min_length=1, max_length=128, pattern=ID,
                          description="The betting engine's quote; used once per bet (the same "
                                      "quote again replays).")
    value: StrictInt = Field(ge=0, le=10**15, description="The quoted value, minor units.")
    expires_at: datetime = Field(description="The quote's expiry: refused after it.")
    stake: StrictInt | None = Field(None, gt=0, le=10**12,
                                    description="A partial cash-out: the share of the remaining "
                                                "stake (minor units). Absent: all of it.")


class CashOutReversalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500,
                        description="Why the cash-out is reversed (a palpable error).")


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

    kind: Literal["settlement", "resettlement", "rollback", "cash_out", "cash_out_reversal",
                  "cancellation", "cancellation_rollback"]
    version: int = Field(description="The settlement version; a cash-out's number; a "
                                     "cancellation's id.")
    market_id: str = Field(description="The market whose result (or rollback) triggered it.")
    payout: int = Field(description="What these results return, minor units (rollback: 0).")
    delta: int = Field(description="Moved to (+) or from (-) the player, minor units.")
    applied: bool = Field(description="False: upgrade_only kept a downgrade out.")
    outcome: str
    ledger_key: str | None
    shortfall: int = Field(description="Clawback part that became player debt.")
    results: dict[str, Any] = Field(description="The leg results used.")
    created_at: datetime


class CashOut(BaseModel):
    seq: int = Field(description="1, 2, ... per bet; ledger key bet:<id>:cashout[:<seq>].")
    quote_id: str
    quote_expires_at: datetime
    stake: int = Field(description="The share of the stake cashed out.")
    value: int
    ledger_key: str
    state: Literal["done", "reversed"]
    created_at: datetime
    reversed_at: datetime | None
    reversal_reason: str | None


class Bet(BaseModel):
    object: Literal["bet"] = "bet"
    id: str = Field(description="The betting engine's bet id.")
    partner_id: str
    player_id: str
    currency: str
    stake: int
    bet_type: Literal["single", "parlay", "each_way"]
    each_way: EachWay | None
    status: Literal["open", "settled", "rejected", "cashed_out", "cancelled"]
    reject_code: str | None
    reject_reason: str | None
    funding: Literal["cash", "free_bet"] = "cash"
    stake_bonus: int = Field(0, description="The part of the stake from bonus funds.")
    bonus_id: str | None = Field(None, description="The bonus active when the bet was placed "
                                                   "(its wagering counts this bet).")
    paid: int = Field(description="Net returned to the player by settlements, minor units "
                                  "(a free bet: its winnings).")
    paid_bonus: int = Field(0, description="The part of `paid` returned as bonus funds.")
    returned_free_bet: int = Field(0, description="The free bet given back (a void free bet, "
                                                  "a cancellation).")
    cashed_out_stake: int = Field(0, description="Stake cashed out so far.")
    cashed_out_value: int = Field(0, description="Paid for it, minor units.")
    cash_outs: list[CashOut] = Field(default_factory=list)
    needs_review: str | None = Field(None, description="Why settlement could not post it.")
    payout: int | None = Field(description="The return under the current results.")
    version: int | None = Field(description="Settlement version of `paid`.")
    placed_at: datetime
    settled_at: datetime | None
    updated_at: datetime
    legs: list[BetLeg]
    settlements: list[BetSettlement]


class BetList(ListPage[Bet]):
    """A page of bets, newest first."""
