"""The market settlement contract: what crosses the boundary of `MarketSettlement` runs.

    WORKFLOW, workflow_id(market, version, mode)   `settle-<market>-v<version>` (rollback:
                                                   `rollback-<market>-v<version>`)
    Activity                                       the activity names the workflow calls
    SettlementRun -> SettlementProgress            the run's input (carried across
                                                   continue-as-new) and its report / query
    RunRef, PlanRequest, BatchRequest, BatchResult, FinishRequest, FinishResult
    Mode, ResultStatus, MarketState, RunState      states, spelled once
    SettlementRefusal                              refusal codes (api/problems.py maps them)

The API, the workflow, the activities, the commands and the store import these names. Must
never import anything with I/O: the workflow imports it directly.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

WORKFLOW = "MarketSettlement"

# Result versions are integers in 1 .. VERSION_MAX (the feed's own numbers, often epoch
# seconds); a parlay's settlement version is the sum of its legs' result versions (bigint).
VERSION_MAX = 2**31 - 1


class Mode(StrEnum):
    SETTLE = "settle"          # settle open bets, resettle settled ones (the delta only)
    ROLLBACK = "rollback"      # reverse what the rolled-back version's settlement posted


def workflow_id(market_id: str, version: int, mode: Mode | str = Mode.SETTLE) -> str:
    prefix = "rollback" if mode == Mode.ROLLBACK else "settle"
    return f"{prefix}-{market_id}-v{version}"


class Activity(StrEnum):
    BEGIN = "settlement.begin"
    PLAN = "settlement.plan"
    BATCH = "settlement.batch"
    FINISH = "settlement.finish"


class ResultStatus(StrEnum):
    """A result version of a market (market_results.status): exactly one is current, or none
    after a rollback."""
    CURRENT = "current"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"


class MarketState(StrEnum):
    """Where a market's settlement stands (market_settlements.state; OPEN and PENDING only
    in the summary: no result yet / a result whose run has not begun)."""
    OPEN = "open"
    PENDING = "pending"
    SETTLING = "settling"
    RESETTLING = "resettling"
    SETTLED = "settled"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


class RunState(StrEnum):
    """The state a run shows in its `progress` query."""
    STARTING = "starting"
    SETTLING = "settling"
    RESETTLING = "resettling"
    ROLLING_BACK = "rolling_back"
    CONTINUING = "continuing"          # handing over to the next run (continue-as-new)
    SETTLED = "settled"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"                # begin refused the run: nothing was changed


class SettlementRefusal(StrEnum):
    """Why a result, a rollback, a reopening, a run or a bet on a market is refused."""
    INVALID_RESULT = "invalid_result"
    RESULT_VERSION_STALE = "result_version_stale"        # not above every earlier version
    RESULT_VERSION_CONFLICT = "result_version_conflict"  # same version, other selections
    CORRECTION_WINDOW_CLOSED = "correction_window_closed"
    RESULT_NOT_CURRENT = "result_not_current"            # rollback of a superseded version
    RESULT_NOT_FOUND = "result_not_found"
    RESULT_ROLLED_BACK = "result_rolled_back"            # a settle run of a rolled-back version
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"        # a ledger key reused: a bug, loud
    MARKET_NOT_FOUND = "market_not_found"
    MARKET_HAS_RESULT = "market_has_result"              # reopen while a result is current
    MARKET_SETTLED = "market_settled"                    # a bet on a market with a result
    MARKET_CLOSED = "market_closed"                      # a bet on a market closed after one
    OPERATOR_ONLY = "operator_only"                      # markets are the house's
    INVALID_CANCELLATION = "invalid_cancellation"        # a window that ends before it starts
    CANCELLATION_CONFLICT = "cancellation_conflict"      # same cancellation id, other details
    CANCELLATION_NOT_FOUND = "cancellation_not_found"


# Refusals no retry can fix (the workflow's retry policy stops at once on these).
NON_RETRYABLE: tuple[str, ...] = (
    SettlementRefusal.RESULT_NOT_FOUND, SettlementRefusal.RESULT_ROLLED_BACK,
    SettlementRefusal.CORRECTION_WINDOW_CLOSED, SettlementRefusal.IDEMPOTENCY_CONFLICT,
)


class SettlementRun(BaseModel):
    market_id: str
    version: int
    mode: Mode = Mode.SETTLE
    batch_size: int = 2000
    concurrency: int = 4              # batches in flight at once (the parts of a round)
    rounds_per_run: int = 40          # continue-as-new after this many rounds (bounded history)
    batch_timeout_seconds: int = 120  # a worker dying mid-batch is noticed after this long
    # Carried across continue-as-new:
    cursor: str = ""
    started: bool = False
    processed: int = 0
    posted: int = 0
    pending: int = 0
    skipped: int = 0
    needs_review: int = 0
    payout_delta: int = 0
    runs: int = 1


class SettlementProgress(BaseModel):
    market_id: str
    version: int
    mode: Mode
    state: RunState
    cursor: str
    processed: int
    posted: int
    pending: int
    skipped: int
    payout_delta: int
    runs: int
    needs_review: int = 0
    refusal_code: str | None = None
    refusal_reason: str | None = None


class RunRef(BaseModel):
    market_id: str
    version: int
    mode: Mode
    workflow_id: str


class PlanRequest(BaseModel):
    market_id: str
    after: str                  # cursor: the last bet id done ("" at the start)
    size: int                   # bets in the round


class BatchRequest(BaseModel):
    run: RunRef
    lo: str                     # bets with lo < id <= hi ...
    hi: str
    part: int = 0               # ... whose player is in this part of the round
    parts: int = 1


class BatchResult(BaseModel):
    processed: int              # bets looked at
    posted: int                 # ledger postings made
    pending: int                # parlays still waiting for another market
    skipped: int                # upgrade_only downgrades kept out
    payout_delta: int           # net moved to players
    needs_review: int = 0       # bets that could not be posted (named in the audit record)


class FinishRequest(BaseModel):
    run: RunRef
    processed: int
    posted: int


class FinishResult(BaseModel):
    state: MarketState
    bets: dict[str, int]
    totals: dict[str, dict[str, int]]
