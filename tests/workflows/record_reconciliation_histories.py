"""Re-record the reconciliation workflow's stored histories from real runs (not part of the
test suite: run it by name).

    .venv/bin/python -m pytest -q -p no:cacheprovider \\
        tests/workflows/record_reconciliation_histories.py

Each scenario runs `Reconciliation` on the Temporal dev server with the real worker (the real
activity against PostgreSQL and the Stripe sandbox) and writes its history to
tests/workflows/histories/reconciliation_<name>.json, which test_replay_reconciliation.py
replays against the current workflow code.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support import reconciliation as rec
from tests.support.factories import make_player
from tests.support.stack import Stack
from workflows.contracts.reconciliation import (
    WORKFLOW,
    ReconciliationRequest,
    RunSummary,
    Verdict,
    workflow_id,
)

HISTORIES = Path(__file__).parent / "histories"


async def _record(stack: Stack, worker, name: str, request: ReconciliationRequest,
                  verdict: Verdict) -> None:
    wid = workflow_id(f"{name}-{uuid.uuid4().hex[:8]}")
    handle = await stack.client.start_workflow(WORKFLOW, request, id=wid,
                                               task_queue=worker.task_queue,
                                               result_type=RunSummary)
    assert (await handle.result()).verdict is verdict
    history = await handle.fetch_history()
    (HISTORIES / f"reconciliation_{name}.json").write_text(history.to_json())


async def test_record_reconciled(stack: Stack, worker):
    start = await rec.next_second()
    until = await rec.next_second()
    await _record(stack, worker, "reconciled",
                  ReconciliationRequest(since=start, until=until, grace_seconds=0),
                  Verdict.RECONCILED)


async def test_record_breaks(stack: Stack, worker):
    start = await rec.next_second()
    rec.paid_withdrawal(stack, make_player(stack.engine), 800, gateway_ref="po_recorded")
    until = await rec.next_second()
    await _record(stack, worker, "breaks",
                  ReconciliationRequest(since=start, until=until, grace_seconds=0),
                  Verdict.BREAKS)


async def test_record_scheduled_default_window(stack: Stack, worker):
    await _record(stack, worker, "default_window", ReconciliationRequest(repair=False),
                  Verdict.RECONCILED_WITH_PENDING)
