"""What crosses the reconciliation workflow's boundary: its name and ids, the daily schedule's
id, the request, the activity's input and result, and the activity name.

One run of `Reconciliation` = one reconciliation run (reconciliation.runner) over a window
ending at the request's `until`, else the workflow's start time; the run id is the workflow
id, so a retried activity records the same run once. The daily Temporal Schedule
(`SCHEDULE_ID`) starts it; an operator starts one with `POST /v1/reconciliation/runs` (or
triggers the schedule in Temporal UI), or runs `settlepay reconcile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

WORKFLOW = "Reconciliation"
SCHEDULE_ID = "reconciliation-daily"
# ReviewPending (search attribute) of a run that left breaks for an operator.
REVIEW_PENDING = "reconciliation_breaks"


def workflow_id(stamp: str) -> str:
    return f"reconciliation-{stamp}"


class Activity(StrEnum):
    RUN = "reconciliation.run"


class RunStatus(StrEnum):
    RUNNING = "running"        # its workflow is working; no row recorded yet
    COMPLETED = "completed"    # recorded (reconciliation_runs)


class Verdict(StrEnum):
    RECONCILED = "reconciled"
    RECONCILED_WITH_PENDING = "reconciled_with_pending"
    BREAKS = "breaks"
    INCOMPLETE = "incomplete"

    @property
    def search_value(self) -> str:
        return self.value.upper()


@dataclass(frozen=True)
class ReconciliationRequest:
    """`since` / `until` in unix seconds; None: since the last run's end, until the start.
    `grace_seconds` None: the setting. `actor`: who asked (an operator through the API); None:
    the schedule."""
    since: int | None = None
    until: int | None = None
    repair: bool = True
    grace_seconds: int | None = None
    actor: str | None = None


@dataclass(frozen=True)
class RunInput:
    run_id: str
    until: int
    since: int | None = None
    repair: bool = True
    grace_seconds: int | None = None
    actor: str = "workflow"


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    verdict: Verdict
    items: int
    matched: int
    repaired: int
    open_breaks: int
