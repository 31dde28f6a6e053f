"""Request and response bodies of the responsible-gaming endpoints (limits, exclusions).

Amounts are integers in minor units; a limit is per currency and rolling window (day, week,
month). The resources are built by `compliance.limits.limits_view` and
`commands.limits.exclusion_payload`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from domain.limits import Period

LimitAmount = Annotated[StrictInt, Field(gt=0, le=10**15)]


class DepositLimitsUpdate(BaseModel):
    """A period left out is unchanged; null removes its limit (after the cool-off)."""

    # At least one period is named: the OpenAPI description says so too.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["day"]}, {"required": ["week"]}, {"required": ["month"]}]})

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    day: LimitAmount | None = None
    week: LimitAmount | None = None
    month: LimitAmount | None = None

    @model_validator(mode="after")
    def names_a_period(self) -> DepositLimitsUpdate:
        if not self.model_fields_set & {"day", "week", "month"}:
            raise ValueError("name at least one of day, week, month (null removes a limit)")
        return self

    def requested(self) -> dict[Period, int | None]:
        return {Period(p): getattr(self, p) for p in ("day", "week", "month")
                if p in self.model_fields_set}


class SelfExclusionCreate(BaseModel):
    # Either a number of days or permanent: true, as the OpenAPI description says too.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["duration_days"],
         "properties": {"duration_days": {"type": "integer"}, "permanent": {"const": False}}},
        {"required": ["permanent"],
         "properties": {"permanent": {"const": True}, "duration_days": {"type": "null"}}}]})

    duration_days: StrictInt | None = Field(default=None, gt=0, le=36500)
    permanent: StrictBool = False

    @model_validator(mode="after")
    def one_of(self) -> SelfExclusionCreate:
        if self.permanent == (self.duration_days is not None):
            raise ValueError("give either duration_days or permanent: true")
        return self


class TimeOutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_hours: StrictInt = Field(gt=0, le=24 * 366)


class Exclusion(BaseModel):
    """A self-exclusion or time-out: deposits and bets blocked until `ends_at` (never if null)."""

    object: Literal["exclusion"] = "exclusion"
    id: str
    player_id: str
    kind: Literal["self_exclusion", "time_out"]
    starts_at: datetime
    ends_at: datetime | None
    permanent: bool


class PendingLimitChange(BaseModel):
    amount: int | None = Field(description="The limit after the cool-off; null removes it.")
    effective_at: datetime
    requested_at: datetime


class PeriodLimit(BaseModel):
    period: Literal["day", "week", "month"]
    amount: int | None = Field(description="The limit in force (null: none yet, one pending).")
    used: int = Field(description="Deposits counted in the rolling window, in minor units.")
    remaining: int | None
    pending_change: PendingLimitChange | None


class CurrencyLimits(BaseModel):
    currency: str
    limits: list[PeriodLimit]


class Limits(BaseModel):
    """A player's deposit limits per currency, and the exclusions in force."""

    object: Literal["responsible_gaming_limits"] = "responsible_gaming_limits"
    player_id: str
    currencies: list[CurrencyLimits]
    exclusions: list[Exclusion]
