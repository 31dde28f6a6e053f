"""Request and response bodies of /v1/reconciliation (operator scope).

The resources are built by `commands.reconciliation` (`run_payload`, `break_payload`), the same
builders the outbox events and the CLI use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.schemas.moments import NOT_A_NUMBER
from api.schemas.text import not_blank

BreakStatusFilter = Literal["open", "repaired", "resolved"]


class ReconciliationRun(BaseModel):
    """A run: `running` while its workflow works (only the id, window and who started it are
    known; the rest is null), `completed` once recorded."""

    id: str
    status: Literal["running", "completed"]
    provider: str
    verdict: Literal["reconciled", "reconciled_with_pending", "breaks", "incomplete"] | None
    window_start: datetime
    window_end: datetime
    as_of: datetime | None
    items: int | None = Field(description="Business operations examined (deposits, "
                                          "withdrawals, gateway records none of ours claims).")
    matched: int | None = Field(description="Matched automatically, auto-repairs included.")
    pending: int | None = Field(description="In flight within the grace period: not breaks.")
    repaired: int | None
    fees_booked: int | None
    gateway_rows: int | None
    match_rate_by_count: float | None
    matched_amount: int | None
    total_amount: int | None
    match_rate_by_amount: float | None
    counts: dict[str, int] | None = Field(description="Breaks found by class.")
    residual: dict[str, int] | None = Field(
        description="Per currency, what the gateway moved that the ledger does not explain "
                    "(minor units).")
    error: str | None
    created_by: str
    created_at: datetime | None


class ReconciliationRunList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ReconciliationRun]
    has_more: bool


class ReconciliationRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Annotated[AwareDatetime | None, NOT_A_NUMBER] = Field(
        None, description="Window start (default: where the last run's window ended, else 24 "
                          "hours ago).")
    until: Annotated[AwareDatetime | None, NOT_A_NUMBER] = Field(
        None, description="Window end (default: now).")
    repair: bool = Field(True, description="Auto-repair the safe break classes.")
    grace_seconds: int | None = Field(None, ge=0, le=7 * 86_400, description=(
        "Items younger than this are pending (default: SETTLEPAY_RECONCILIATION_GRACE_SECONDS)."))


class ReconciliationBreak(BaseModel):
    id: int
    run_id: str
    last_run_id: str
    class_: str = Field(alias="class", serialization_alias="class")
    business_key: str
    partner_id: str | None
    currency: str
    amount: int
    delta: int
    evidence: dict[str, Any] = Field(description="What each side says: gateway, ours, ledger.")
    repair: str | None
    status: BreakStatusFilter
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime

    model_config = ConfigDict(populate_by_name=True)


class ReconciliationBreakList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ReconciliationBreak]
    has_more: bool


class BreakResolve(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=3, max_length=2000, pattern=not_blank(3),
                        description="Why the break is closed; kept in the audit trail.")
