"""Request and response bodies of free bets, bonuses and deposit-match offers (Stripe-like
resources: `object`, `id`). Amounts are integers in minor units; odds are strings (decimal
"1.50", fractional "1/2" or American "-200"), shown back as exact fractions ("3/2"). The
responses are built by commands/promotions.py, the same builders as the events' payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class FreeBetGrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128, pattern=ID,
                    description="The grant's id (the same grant again replays).")
    player_id: str = Field(min_length=1, max_length=128)
    amount: StrictInt = Field(gt=0, le=10**12, description="Minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reason: str = Field(min_length=1, max_length=200,
                        description="The promotion or the operator's reason.")


class FreeBetGrant(BaseModel):
    object: Literal["free_bet_grant"] = "free_bet_grant"
    id: str
    player_id: str
    partner_id: str
    currency: str
    amount: int
    reason: str
    granted_by: str
    created_at: datetime
    replayed: bool = False


class BonusCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128, pattern=ID,
                    description="The bonus's id (the same bonus again replays).")
    player_id: str = Field(min_length=1, max_length=128)
    amount: StrictInt = Field(gt=0, le=10**12, description="Bonus funds, minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    wagering_multiplier: StrictInt | None = Field(
        None, ge=0, le=1000, description="Wagering requirement as a multiple of the bonus "
                                         "(default: SETTLEPAY_BONUS_WAGERING_MULTIPLIER).")
    min_odds: StrictStr | None = Field(
        None, max_length=16, description="Lowest price a bet counts at (default: "
                                         "SETTLEPAY_BONUS_MIN_ODDS).")
    expires_at: datetime | None = Field(
        None, description="Default: SETTLEPAY_BONUS_VALID_DAYS from now.")


class Bonus(BaseModel):
    object: Literal["bonus"] = "bonus"
    id: str
    player_id: str
    partner_id: str
    currency: str
    amount: int
    source: Literal["deposit_match", "promotion"]
    source_ref: str | None
    wagering_requirement: int = Field(description="Minor units to wager before it converts.")
    wagered: int = Field(description="Stakes of settled qualifying bets so far.")
    min_odds: str = Field(description="Exact decimal price, e.g. \"3/2\".")
    status: Literal["active", "converted", "forfeited"]
    expires_at: datetime
    converted_amount: int | None
    forfeited_amount: int | None
    forfeit_reason: str | None
    created_at: datetime
    closed_at: datetime | None
    replayed: bool = False


class BonusForfeit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("operator", min_length=1, max_length=200)


class DepositMatchSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: StrictInt = Field(ge=1, le=1000, description="Of the deposit, e.g. 100.")
    max_amount: StrictInt = Field(gt=0, le=10**12,
                                  description="Largest bonus, in the deposit's minor units.")
    wagering_multiplier: StrictInt = Field(ge=0, le=1000)
    min_odds: StrictStr = Field(max_length=16)
    valid_days: StrictInt = Field(ge=1, le=3650)
    active: StrictBool = True


class DepositMatch(BaseModel):
    object: Literal["deposit_match_offer"] = "deposit_match_offer"
    partner_id: str
    percent: int
    max_amount: int
    wagering_multiplier: int
    min_odds: str
    valid_days: int
    active: bool
    updated_at: datetime


class PromotionBalance(BaseModel):
    currency: str
    free_bet: int = Field(description="Free bets the player may stake, minor units.")
    free_bets_in_play: int = Field(description="Free-bet stakes of open bets.")
    bonus: int = Field(description="Bonus funds: stakeable, never withdrawable.")
    active_bonus_id: str | None


class PromotionBalances(BaseModel):
    object: Literal["promotion_balances"] = "promotion_balances"
    player_id: str
    balances: list[PromotionBalance]
