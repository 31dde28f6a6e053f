"""Settlement capability: the market settlement workflow and its batch activities, on the
settlement task queue so a large market never starves deposits and withdrawals."""

from activities.settlement import SettlementActivities
from workers.deps import Deps
from workflows.settlement import MarketSettlementWorkflow

WORKFLOWS = [MarketSettlementWorkflow]


def activities(deps: Deps) -> list:
    return SettlementActivities(deps).all()
