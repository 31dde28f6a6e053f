"""The deposits capability: the deposit workflow and its activities (task queue MAIN)."""

from __future__ import annotations

from activities.deposit import DepositActivities
from workers.deps import Deps
from workflows.deposit import DepositWorkflow

WORKFLOWS = [DepositWorkflow]


def activities(deps: Deps) -> list:
    return DepositActivities(deps).all()
