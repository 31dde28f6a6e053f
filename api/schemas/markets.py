"""Request and response bodies of /v1/markets/{market_id}: result versions, rollbacks, the
settlement view. Result factors are exact ("0.5", "1/3", 0 or 1): never a float; amounts are
integers in minor units, per currency."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from api.schemas.lists import ListPage
from api.schemas.moments import Moment
from workflows.contracts.settlement import VERSION_MAX, MarketState, ResultStatus

Factor = StrictStr | StrictInt   # "0.5", "1/3", 0 or 1: never a float


class SelectionResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result: Literal["won", "lost"]
    void_factor: Factor = 0
    dead_heat_factor: Factor = 1
    position: StrictInt | None = Field(None, ge=1)
    tied: StrictInt = Field(1, ge=1)
    rule4: Factor = 0
    void_reason: StrictStr | StrictInt | None = Field(
        None, description="Why the selection is void (UOF void_reason), with void_factor > 0.")


class ResultCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=1, le=VERSION_MAX,
                               description="Higher than every earlier version of the market.")
    selections: dict[str, SelectionResultIn] = Field(min_length=1, max_length=500)


class RollbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=1, le=VERSION_MAX,
                               description="The market's current result version.")


class MarketResult(BaseModel):
    object: Literal["market_result"] = "market_result"
    market_id: str
    version: int
    selections: dict[str, dict[str, object]]
    status: ResultStatus
    replayed: bool
    workflow_id: str


class MarketRollback(BaseModel):
    object: Literal["market_rollback"] = "market_rollback"
    market_id: str
    version: int
    replayed: bool
    workflow_id: str


class MarketBetting(BaseModel):
    object: Literal["market_betting"] = "market_betting"
    market_id: str
    betting: Literal["open", "closed"]
    replayed: bool = Field(description="True when the market already took bets.")


class SettlementRunCounts(BaseModel):
    bets_processed: int
    bets_posted: int


class BetCounts(BaseModel):
    total: int
    open: int
    settled: int


class CancellationCreate(BaseModel):
    """A BetCancel of the Unified Odds Feed."""
    model_config = ConfigDict(extra="forbid")
    id: StrictStr = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
                          description="The feed's id of this cancellation (a retry replays).")
    reason_code: StrictStr | StrictInt = Field(
        description="The void reason (UOF `void_reason`), kept with every bet it refunds.")
    reason: str | None = Field(None, max_length=500)
    placed_from: Moment | None = Field(None, description="Only bets placed at or after this.")
    placed_until: datetime | None = Field(None, description="Only bets placed before this.")


class MarketCancellation(BaseModel):
    object: Literal["market_cancellation"] = "market_cancellation"
    id: str
    market_id: str
    reason_code: str
    reason: str | None
    placed_from: datetime | None
    placed_until: datetime | None
    status: Literal["active", "rolled_back"]
    bets_cancelled: int = Field(description="Bets refunded in full by it.")
    created_at: datetime
    rolled_back_at: datetime | None
    replayed: bool = False


class CurrencyTotals(BaseModel):
    stake: int = Field(description="Stakes of the settled bets, minor units.")
    paid: int = Field(description="Paid to the players, minor units.")
    house: int = Field(description="stake - paid.")


class ResultVersion(BaseModel):
    version: int
    status: ResultStatus
    received_at: datetime


class MarketSettlement(BaseModel):
    object: Literal["market_settlement"] = "market_settlement"
    market_id: str
    version: int | None
    state: MarketState
    workflow_id: str | None
    run: SettlementRunCounts | None
    first_settled_at: datetime | None
    betting: Literal["open", "closed"] = Field(
        description="Whether the market takes bets: closed from its first result on, until an "
                    "operator reopens it after a rollback.")
    bets: BetCounts = Field(description="A partner key counts its own players' bets only.")
    bets_needing_review: int = Field(
        description="Bets settlement could not post (flagged, reported, left as they were).")
    bets_cashed_out: int = Field(0, description="Bets cashed out in full: final, results "
                                                "leave them alone.")
    bets_cancelled: int = Field(0, description="Bets refunded by a market cancellation.")
    totals: dict[str, CurrencyTotals] = Field(
        description="Per currency; a partner key sees its own players' bets only.")
    result_versions: list[ResultVersion]


class Market(BaseModel):
    """A market the house has recorded a result for (GET /v1/markets); where its settlement
    stands is GET /v1/markets/{id}/settlement."""

    object: Literal["market"] = "market"
    id: str = Field(description="The feed's market id.")
    betting: Literal["open", "closed"] = Field(
        description="Whether the market takes bets: closed from its first result on, until an "
                    "operator reopens it after a rollback.")
    closed_at: datetime | None
    reopened_at: datetime | None
    created_at: datetime = Field(description="When the house first recorded a result for it.")
    updated_at: datetime


class MarketList(ListPage[Market]):
    """A page of markets, newest first (a partner: those its players have bets on)."""
