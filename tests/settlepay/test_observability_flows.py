"""Observability of deposits and market settlement on the real stack: the business metrics move
after a real deposit and a real settlement run, the workflows and activities log each step
boundary with their workflow id, and a settlement run (continue-as-new included) is one
connected trace down to each part of each batch and its SQL.

Deposits run on the real worker entrypoint (tests/support/telemetry.py `running_worker`).
The settlement run gets a worker of the real registrations (workers/wiring.py) on a task queue
of its own, from a client made by settlepay/temporal.py (tracing interceptor), so no other
worker of the session takes its tasks.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import REGISTRY
from temporalio.worker import Worker

from settlepay import temporal
from tests.support.deposits import post_deposit, wait_for_status
from tests.support.factories import ledger_violations, make_player
from tests.support.leftovers import close_open_money_workflows
from tests.support.settlement import bet_row, cash, funded_player, place, post_result, uid
from tests.support.stack import Stack
from tests.support.telemetry import (
    SpanRecorder,
    ancestors,
    captured_logs,
    running_worker,
    spans_by_id,
)
from workers import main as worker_main
from workers import wiring
from workflows.contracts.settlement import (
    WORKFLOW,
    SettlementProgress,
    SettlementRun,
    workflow_id,
)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _is_sql(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return "postgresql" in (attributes.get("db.system"), attributes.get("db.system.name"))


async def test_a_succeeded_and_a_declined_deposit_move_the_deposit_metrics_and_log_their_steps(
        stack: Stack, http) -> None:
    player = make_player(stack.engine)
    await close_open_money_workflows(stack)     # none may reach its outcome in this count
    succeeded = _sample("settlepay_deposits_total", outcome="succeeded")
    failed = _sample("settlepay_deposits_total", outcome="failed")
    timed_succeeded = _sample("settlepay_deposit_seconds_count", outcome="succeeded")
    timed_failed = _sample("settlepay_deposit_seconds_count", outcome="failed")
    with captured_logs() as captured:
        async with running_worker(stack.settings):
            paid = (await post_deposit(http, player, amount=1_200)).json()
            declined = (await post_deposit(http, player, amount=1_300,
                                           payment_method="pm_card_chargeDeclined")).json()
            credit = await wait_for_status(http, player, paid["id"])
            assert credit["status"] == "succeeded"
            assert (await wait_for_status(http, player, declined["id"]))["status"] == "failed"

    assert _sample("settlepay_deposits_total", outcome="succeeded") == succeeded + 1
    assert _sample("settlepay_deposits_total", outcome="failed") == failed + 1
    assert _sample("settlepay_deposit_seconds_count", outcome="succeeded") == timed_succeeded + 1
    assert _sample("settlepay_deposit_seconds_count", outcome="failed") == timed_failed + 1
    assert _sample("settlepay_deposit_seconds_sum", outcome="succeeded") > 0

    events = captured.events()

    def of(deposit_id: str, event: str) -> list[dict]:
        return [e for e in events if e["event"] == event
                and e.get("workflow_id") == f"deposit-{deposit_id}"]

    # The workflow: each step (activity) and each state, in the runbook's order.
    assert [e["deposit_step"] for e in of(paid["id"], "deposit step")] == [
        "deposit.check_gates", "deposit.create_payment", "deposit.credit_player"]
    assert [e["deposit_state"] for e in of(paid["id"], "deposit state")][-1] == "succeeded"
    assert [e["deposit_step"] for e in of(declined["id"], "deposit step")] == [
        "deposit.check_gates", "deposit.create_payment", "deposit.fail"]
    assert [e["deposit_state"] for e in of(declined["id"], "deposit state")][-1] == "failed"
    # The activities: what each did, with the activity's type.
    credited = of(paid["id"], "deposit credited")
    assert credited and credited[0]["activity_type"] == "deposit.credit_player"
    assert credited[0]["ledger_transaction_id"] == credit["ledger_transaction_id"]
    assert of(paid["id"], "deposit gates passed")
    assert [e["gateway_status"] for e in of(paid["id"], "deposit payment created")] == [
        "succeeded"]
    refused = of(declined["id"], "deposit payment declined")
    assert refused and refused[0]["decline_code"]
    assert [e["recorded"] for e in of(declined["id"], "deposit failed")] == [True]
    assert ledger_violations(stack.engine) == []


async def test_a_settlement_run_is_one_trace_down_to_every_batch_part_and_moves_its_metrics(
        stack: Stack, recorder: SpanRecorder) -> None:
    engine, settings = stack.engine, stack.settings
    market = uid("mkt")
    players = [funded_player(engine, 2_000) for _ in range(4)]
    bets = [place(engine, settings, p, 1_000, [(market, selection, "2.00")])
            for p in players for selection in ("home", "away")]
    post_result(engine, settings, market, 1,
                {"home": {"result": "won"}, "away": {"result": "lost"}})
    settled = _sample("settlepay_settlement_bets_total", step="settlement")
    parts = _sample("settlepay_settlement_part_seconds_count")
    runs = _sample("settlepay_settlement_seconds_count")

    queue = f"settlement-observability-{uuid.uuid4().hex[:8]}"
    client = await temporal.connect(settings)          # with the tracing interceptor
    # The worker's own engine, made after the instrumentation as in the worker process (a
    # connection opened before it makes no SQL spans).
    worker_engine = worker_main.build_engine(settings)
    workflows, activities = wiring.settlement_queue(worker_engine, settings)
    try:
        with ThreadPoolExecutor(max_workers=4) as executor, captured_logs() as captured:
            async with Worker(client, task_queue=queue, workflows=workflows,
                              activities=activities, activity_executor=executor,
                              max_concurrent_activities=4):
                # 8 bets, rounds of 2 parts x 2 bets, one round per run: 2 rounds, each in a
                # run of its own (continue-as-new), 4 batch parts in all.
                with trace.get_tracer("tests").start_as_current_span("settle market") as root:
                    handle = await client.start_workflow(
                        WORKFLOW, SettlementRun(market_id=market, version=1, batch_size=2,
                                                concurrency=2, rounds_per_run=1),
                        id=workflow_id(market, 1), task_queue=queue,
                        result_type=SettlementProgress)
                report = await handle.result()
    finally:
        worker_engine.dispose()
    assert report.state == "settled" and report.processed == 8 and report.runs >= 2
    assert all(bet_row(engine, b)["status"] == "settled" for b in bets)
    assert all(cash(engine, p) == 2_000 for p in players)     # 1,000 lost, 1,000 x 2.00 won

    # One connected trace through continue-as-new: the workflow's spans (each run's
    # RunWorkflow, its StartActivity -> RunActivity) under the StartWorkflow span, each batch
    # part a RunActivity of one of the runs, naming its part, with its SQL under it.
    spans = recorder.trace_of(root)
    index = spans_by_id(spans)
    names = sorted({s.name for s in spans})
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in index]
    assert [s.context.span_id for s in roots] == [root.get_span_context().span_id], names
    start = [s for s in spans if s.name == "StartWorkflow:MarketSettlement"]
    assert len(start) == 1 and root.get_span_context().span_id in {
        s.context.span_id for s in ancestors(start[0], index)}, names
    run_ids = {(s.attributes or {}).get("temporalRunID") for s in spans
               if s.name == "RunWorkflow:MarketSettlement"}
    assert len(run_ids) >= 2, names
    batches = [s for s in spans if s.name == "RunActivity:settlement.batch"]
    assert len(batches) == 4, names
    for batch in batches:
        attributes = batch.attributes or {}
        assert index[batch.parent.span_id].name == "StartActivity:settlement.batch"
        assert start[0] in ancestors(batch, index)
        assert attributes["temporalRunID"] in run_ids
        assert attributes["settlement.parts"] == 2
        assert any(_is_sql(s) and batch in ancestors(s, index) for s in spans), names
    assert sorted(b.attributes["settlement.part"] for b in batches) == [0, 0, 1, 1]
    assert sum(b.attributes["settlement.bets"] for b in batches) == 8   # split by player
    assert {"RunActivity:settlement.begin", "RunActivity:settlement.plan",
            "RunActivity:settlement.finish"} <= set(names)

    # Metrics: every bet settled once, each part timed, the run timed from its result.
    assert _sample("settlepay_settlement_bets_total", step="settlement") == settled + 8
    assert _sample("settlepay_settlement_part_seconds_count") == parts + 4
    assert _sample("settlepay_settlement_seconds_count") == runs + 1

    # Logs: the workflow's step boundaries and the activities' lines, with the workflow id.
    mine = [e for e in captured.events() if e.get("workflow_id") == workflow_id(market, 1)]
    steps = [e["settlement_step"] for e in mine if e["event"] == "settlement step"]
    assert steps[0] == "begin" and steps[-1] == "finish", steps
    assert steps.count("round") == 2 and "continue_as_new" in steps, steps
    batch_lines = [e for e in mine if e["event"] == "settlement batch"]
    assert len(batch_lines) == 4 and sum(e["bets_processed"] for e in batch_lines) == 8
    assert all(e["activity_type"] == "settlement.batch" for e in batch_lines)
    assert [e["settlement_state"] for e in mine if e["event"] == "settlement finished"] == [
        "settled"]
    assert ledger_violations(engine) == []

