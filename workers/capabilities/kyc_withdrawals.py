"""The KYC and withdrawal capability: its workflows and activities, for workers/registry.py.

Providers come from Deps.providers: `kyc` (document checks), `notify` (one-time codes) and
`gateway` (refunds and payouts). Must never hold business logic.
"""

from __future__ import annotations

from activities.kyc import KycActivities
from activities.withdrawal import WithdrawalActivities
from workers.deps import Deps
from workflows.kyc import KycWorkflow
from workflows.withdrawal import WithdrawalWorkflow

WORKFLOWS = [KycWorkflow, WithdrawalWorkflow]


def activities(deps: Deps) -> list:
    return KycActivities(deps).all() + WithdrawalActivities(deps).all()
