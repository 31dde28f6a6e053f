"""Money workflows earlier tests left open, closed before a test that counts outcomes.

The session shares one Temporal server and one main task queue, and every test's worker polls
it. A deposit an earlier test left waiting for 3-D Secure (tests/security does, on purpose)
stays open in Temporal: the next worker on the queue runs it on, and when its timeout has passed
it fails - counted in this process's `settlepay_deposits_total`, inside whichever later test
happened to be running. A test that asserts a process-wide counter's delta closes them first.

The open ones are found in the database (a row not in a final state), not in Temporal's
visibility, which lags: the deposits and withdrawals tables are written before their workflow
starts, so nothing an earlier test began is missed.
"""

from __future__ import annotations

from sqlalchemy import text
from temporalio.service import RPCError, RPCStatusCode

from tests.support.stack import Stack
from workflows.contracts import deposit, withdrawal

REASON = "closed by the test suite: left open by an earlier test"


async def close_open_money_workflows(stack: Stack) -> list[str]:
    """Terminate the workflow of every deposit and withdrawal not in a final state; the ids of
    the ones that were still running."""
    with stack.engine.connect() as conn:
        deposits = conn.execute(text("SELECT id FROM deposits WHERE NOT status = ANY(:final)"),
                                {"final": sorted(deposit.FINAL_STATUSES)}).scalars().all()
        withdrawals = conn.execute(
            text("SELECT id FROM withdrawals WHERE NOT state = ANY(:final)"),
            {"final": sorted(withdrawal.FINAL_STATES)}).scalars().all()
    ids = [deposit.workflow_id(i) for i in deposits]
    ids += [withdrawal.workflow_id(i) for i in withdrawals]
    closed = []
    for workflow_id in ids:
        try:
            await stack.client.get_workflow_handle(workflow_id).terminate(reason=REASON)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:     # not started, or already closed
                raise
        else:
            closed.append(workflow_id)
    return closed
