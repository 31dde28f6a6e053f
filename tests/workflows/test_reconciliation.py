"""The reconciliation workflow's runbook on the time-skipping server with a stub activity
registered under the real name (no PostgreSQL, no gateway): the window it asks for, the run id,
and the search attributes operators find runs and open breaks by."""

from __future__ import annotations

import uuid

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from settlepay import search_attributes
from workflows.contracts.reconciliation import (
    REVIEW_PENDING,
    WORKFLOW,
    Activity,
    ReconciliationRequest,
    RunInput,
    RunSummary,
    Verdict,
    workflow_id,
)
from workflows.reconciliation import ReconciliationWorkflow


@pytest.fixture(scope="module")
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The time-skipping server with the search attributes the workflow upserts."""
    client = time_skipping_env.client
    kinds = {"KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
             "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT}
    for key in search_attributes.ALL:     # one by one: some may be registered already
        kind = kinds[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
        try:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=client.namespace, search_attributes={key.name: kind}))
        except RPCError as error:
            assert "already" in str(error).lower(), error
    return time_skipping_env


async def run_with(env: WorkflowEnvironment, answer: Verdict, open_breaks: int,
                   request: ReconciliationRequest) -> tuple[RunSummary, list[RunInput], dict]:
    asked: list[RunInput] = []
    began = int((await env.get_current_time()).timestamp())

    @activity.defn(name=Activity.RUN)
    async def stub(given: RunInput) -> RunSummary:
        asked.append(given)
        return RunSummary(given.run_id, answer, 10, 10 - open_breaks, 0, open_breaks)

    queue = f"recon-{uuid.uuid4().hex[:8]}"
    wid = workflow_id(uuid.uuid4().hex[:8])
    async with Worker(env.client, task_queue=queue, workflows=[ReconciliationWorkflow],
                      activities=[stub]):
        handle = await env.client.start_workflow(WORKFLOW, request, id=wid, task_queue=queue,
                                                 result_type=RunSummary)
        summary = await handle.result()
        described = await handle.describe()
    attributes = {key.name: value for key, value in described.typed_search_attributes}
    ended = int((await env.get_current_time()).timestamp())
    assert summary.run_id == wid
    assert all(began - 1 <= a.until <= ended + 1 or a.until == request.until for a in asked)
    return summary, asked, attributes


async def test_a_run_with_breaks_is_findable_as_waiting_for_an_operator(env):
    summary, asked, attributes = await run_with(env, Verdict.BREAKS, 3, ReconciliationRequest())
    assert (summary.verdict, summary.open_breaks) == (Verdict.BREAKS, 3)
    assert attributes["ReconciliationVerdict"] == "BREAKS"
    assert attributes["ReviewPending"] == REVIEW_PENDING
    [given] = asked
    assert given.since is None and given.repair is True
    # `until` defaults to the workflow's start on the server's clock (checked in run_with)


async def test_a_reconciled_run_leaves_nothing_for_an_operator(env):
    summary, asked, attributes = await run_with(env, Verdict.RECONCILED, 0,
                                                ReconciliationRequest())
    assert summary.verdict is Verdict.RECONCILED
    assert attributes["ReconciliationVerdict"] == "RECONCILED"
    assert "ReviewPending" not in attributes


async def test_an_explicit_window_and_no_repair_reach_the_activity(env):
    request = ReconciliationRequest(since=1_767_225_600, until=1_767_312_000, repair=False)
    _, asked, _ = await run_with(env, Verdict.RECONCILED_WITH_PENDING, 0, request)
    assert [(a.since, a.until, a.repair) for a in asked] == [(1_767_225_600, 1_767_312_000,
                                                              False)]
