"""Starting the workflow behind a money resource (deposit, withdrawal) from a POST.

The workflow id comes from the resource id, which comes from the Idempotency-Key, so a retried
POST lands on the same workflow: "already started" is the expected answer to a retry, not an
error. The search attributes operators filter on in Temporal UI are set at start.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from settlepay import search_attributes as sa
from settlepay import task_queues


async def start_money_workflow(client: Client, workflow: Any, request: Any, *, workflow_id: str,
                               state_key: SearchAttributeKey[str], state: str) -> None:
    """`request` carries player_id, amount and currency; `state_key`/`state` its first state."""
    try:
        await client.start_workflow(
            workflow, request, id=workflow_id, task_queue=task_queues.MAIN,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.PLAYER_ID, request.player_id),
                SearchAttributePair(sa.AMOUNT, request.amount),
                SearchAttributePair(sa.CURRENCY, request.currency),
                SearchAttributePair(state_key, state)]))
    except WorkflowAlreadyStartedError:
        pass  # a retry of the same POST: the workflow is already under way
