"""Starting the workflow behind a money resource (deposit, withdrawal) from a POST.

The workflow id comes from the resource id, which comes from the Idempotency-Key, so a retried
POST lands on the same workflow: "already started" is the expected answer to a retry, not an
error. A money workflow runs once: the id is never reused, not even after the first run closed
(`REJECT_DUPLICATE`: a POST answered 500 after a successful start and retried once the run has
finished must get the resource as it is, never a second run that would pay or credit again;
issue 9, item 4). Callers also skip the start when the resource shows its workflow has already
run, which still holds once Temporal has forgotten a closed run (its retention period).
The search attributes operators filter on in Temporal UI are set at start, and the memo keeps
the creating request's traceparent (the Stripe webhook and second-factor requests continue that
trace: settlepay/observability/tracing.py `continuing`).
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from settlepay import search_attributes as sa
from settlepay import task_queues
from settlepay.observability import tracing


async def start_money_workflow(client: Client, workflow: str, request: Any, *, workflow_id: str,
                               state_key: SearchAttributeKey[str], state: str) -> bool:
    """Start `workflow` (by name) as `workflow_id` unless that id ever ran; True when this call
    started it. `request` carries player_id, amount and currency; `state_key`/`state` its first
    state (the search attribute's value)."""
    try:
        await client.start_workflow(
            workflow, request, id=workflow_id, task_queue=task_queues.MAIN,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=tracing.memo(),   # the creating request's trace, continued by later requests
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.PLAYER_ID, request.player_id),
                SearchAttributePair(sa.AMOUNT, request.amount),
                SearchAttributePair(sa.CURRENCY, request.currency),
                SearchAttributePair(state_key, state)]))
    except WorkflowAlreadyStartedError:
        return False  # a retry of the same POST: the workflow runs or has run
    return True
