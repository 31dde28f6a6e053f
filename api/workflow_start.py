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

`operation_traceparent(handle)` is where those later requests find it. A workflow id runs once,
so its memo never changes: the process keeps the traceparent of each money workflow it started
(the memo it wrote) or has read back, and asks Temporal (one Describe: ~1.6 M user-space
instructions of the API process, a fifth of a signalled Stripe webhook with telemetry on) only
for a workflow it knows nothing of, e.g. one another API process started.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from temporalio.client import Client, WorkflowHandle
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
    memo = tracing.memo()   # the creating request's trace, continued by later requests
    try:
        await client.start_workflow(
            workflow, request, id=workflow_id, task_queue=task_queues.MAIN,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=memo,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.PLAYER_ID, request.player_id),
                SearchAttributePair(sa.AMOUNT, request.amount),
                SearchAttributePair(sa.CURRENCY, request.currency),
                SearchAttributePair(state_key, state)]))
    except WorkflowAlreadyStartedError:
        return False  # a retry of the same POST: the workflow runs or has run
    if memo is not None:   # the run has exactly this memo (a retry's would not be ours)
        _remember(workflow_id, memo[tracing.TRACEPARENT])
    return True


# Traceparents of money workflows, by workflow id: the memo this process wrote when it started
# the workflow, or read back from Temporal. At most _TRACEPARENTS_MAX (about 250 bytes each),
# the oldest dropped first; a workflow that is dropped is described again if asked for.
_TRACEPARENTS_MAX = 16_384
_traceparents: dict[str, str] = {}


def _remember(workflow_id: str, traceparent: str) -> None:
    if len(_traceparents) >= _TRACEPARENTS_MAX and workflow_id not in _traceparents:
        del _traceparents[next(iter(_traceparents))]
    _traceparents[workflow_id] = traceparent


async def operation_traceparent(handle: WorkflowHandle[Any, Any]) -> str | None:
    """tracing.operation_traceparent: the traceparent in the memo of `handle`'s workflow, or
    None (telemetry off, no memo, Temporal not answering); from what this process knows of the
    workflow when it knows it (the id is never reused: REJECT_DUPLICATE, and the callers skip
    a start once the resource shows its run), else one Describe, whose answer is kept."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None   # telemetry off (as tracing.operation_traceparent)
    known = _traceparents.get(handle.id)
    if known is not None:
        return known
    found = await tracing.operation_traceparent(handle)
    if found is not None:
        _remember(handle.id, found)
    return found
