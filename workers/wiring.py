"""Which workflows and activities each task queue runs, and the activities' dependencies.

One function per task queue; the activity classes get their typed dependencies (engine,
settings, provider adapters) through their constructors here and nowhere else. Settlement has a
queue of its own so a large market never starves deposits and withdrawals.
This module wires; it must hold no business logic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from activities.deposit import DepositActivities
from activities.kyc import KycActivities
from activities.reconciliation import ReconciliationActivities
from activities.settlement import SettlementActivities
from activities.withdrawal import WithdrawalActivities
from settlepay import task_queues
from settlepay.config import Settings
from workers.providers import Providers
from workflows.deposit import DepositWorkflow
from workflows.kyc import KycWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.settlement import MarketSettlementWorkflow
from workflows.withdrawal import WithdrawalWorkflow

Registration = tuple[list[type], list[Callable[..., Any]]]


def main_queue(engine: Engine, settings: Settings, providers: Providers) -> Registration:
    """Deposits, KYC, withdrawals and the daily payment reconciliation."""
    return ([DepositWorkflow, KycWorkflow, WithdrawalWorkflow, ReconciliationWorkflow],
            DepositActivities(engine, settings, providers.gateway).all()
            + KycActivities(engine, settings, providers.kyc).all()
            + WithdrawalActivities(engine, settings, providers.gateway, providers.notifier).all()
            + ReconciliationActivities(engine, settings, providers.gateway).all())


def settlement_queue(engine: Engine, settings: Settings) -> Registration:
    """Market settlement: rounds of set-based batches."""
    return [MarketSettlementWorkflow], SettlementActivities(engine, settings).all()


def for_queue(queue: str, engine: Engine, settings: Settings, providers: Providers) -> Registration:
    if queue == task_queues.MAIN:
        return main_queue(engine, settings, providers)
    if queue == task_queues.SETTLEMENT:
        return settlement_queue(engine, settings)
    return [], []
