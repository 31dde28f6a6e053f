"""Which workflows and activities each task queue runs. One line per capability.

Each capability module exposes `WORKFLOWS` (list of workflow classes) and
`activities(deps) -> list[callable]`; register it in CAPABILITIES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from settlepay import task_queues
from workers.deps import Deps

# (module with WORKFLOWS and activities(deps), task queue)
CAPABILITIES: list[tuple[str, str]] = [
    ("workers.capabilities.deposits", task_queues.MAIN),
    ("workers.capabilities.settlement", task_queues.SETTLEMENT),
    ("workers.capabilities.kyc_withdrawals", task_queues.MAIN),
]


def for_queue(queue: str, deps: Deps) -> tuple[list[type], list[Callable[..., Any]]]:
    workflows: list[type] = []
    activities: list[Callable[..., Any]] = []
    for module_name, module_queue in CAPABILITIES:
        if module_queue != queue:
            continue
        module = importlib.import_module(module_name)
        workflows += module.WORKFLOWS
        activities += module.activities(deps)
    return workflows, activities
