"""api/workflow_start.py: where a later request about a money workflow (Stripe's webhook, the
second factor) finds the traceparent its creating request left in the workflow's memo. On the
real Temporal dev server; the Describe calls are counted by a client interceptor.

The probe workflows have a type no worker runs (they only have to exist) and are terminated
at the end of each test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry import trace
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    Interceptor,
    OutboundInterceptor,
    WorkflowExecutionDescription,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api import workflow_start
from settlepay import search_attributes as sa
from settlepay import task_queues
from settlepay.observability import tracing
from tests.support.telemetry import SpanRecorder, span_recorder

__all__ = ["span_recorder"]

PROBE = "settlepay-test-traceparent-probe"   # a workflow type no worker has


@dataclass
class ProbeRequest:
    player_id: str
    amount: int
    currency: str


class CountedDescribes(Interceptor):
    """The workflow ids this client described."""

    def __init__(self) -> None:
        self.described: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Counting(next, self.described)


class _Counting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, described: list[str]) -> None:
        super().__init__(next)
        self.described = described

    async def describe_workflow(
            self, input: DescribeWorkflowInput) -> WorkflowExecutionDescription:
        self.described.append(input.id)
        return await super().describe_workflow(input)


@pytest.fixture
def counted() -> CountedDescribes:
    return CountedDescribes()


@pytest_asyncio.fixture
async def started(temporal_env: WorkflowEnvironment) -> AsyncIterator[list[str]]:
    """The probe workflows a test started: terminated at its end."""
    ids: list[str] = []
    yield ids
    for workflow_id in ids:
        try:
            await temporal_env.client.get_workflow_handle(workflow_id).terminate("test over")
        except RPCError:   # already closed
            pass


@pytest.fixture
def client(temporal_env: WorkflowEnvironment, counted: CountedDescribes,
           span_recorder: SpanRecorder) -> Client:
    """A client of the dev server with the tracing interceptor (as the API's) that counts its
    Describes."""
    config = temporal_env.client.config()
    config["interceptors"] = [tracing.Tracing(), counted]
    return Client(**config)


async def _start(client: Client, started: list[str], *, through_api: bool,
                 memo: dict[str, Any] | None = None) -> str:
    workflow_id = f"probe-{uuid.uuid4().hex}"
    started.append(workflow_id)
    request = ProbeRequest(player_id="ply_probe", amount=100, currency="USD")
    if through_api:
        assert await workflow_start.start_money_workflow(
            client, PROBE, request, workflow_id=workflow_id, state_key=sa.PAYMENT_STATE,
            state="pending")
    else:   # as another API process would have started it
        await client.start_workflow(PROBE, request, id=workflow_id,
                                    task_queue=task_queues.MAIN, memo=memo)
    return workflow_id


def _span(name: str) -> Any:
    return trace.get_tracer("tests.workflow_start").start_as_current_span(name)


async def _stored(temporal_env: WorkflowEnvironment, workflow_id: str) -> str:
    """The traceparent in the workflow's memo (read with a client that is not counted)."""
    described = await temporal_env.client.get_workflow_handle(workflow_id).describe()
    return await described.memo_value(tracing.TRACEPARENT)


async def test_a_workflow_this_process_started_gives_its_traceparent_without_a_describe(
        client: Client, counted: CountedDescribes, started: list[str],
        temporal_env: WorkflowEnvironment) -> None:
    with _span("POST /v1/deposits") as creating:
        workflow_id = await _start(client, started, through_api=True)
    with _span("POST /v1/webhooks/stripe") as later:
        found = await workflow_start.operation_traceparent(
            client.get_workflow_handle(workflow_id))
    assert counted.described == []
    # The creating request's span, as the memo Temporal holds says.
    assert later.get_span_context().trace_id != creating.get_span_context().trace_id
    assert found is not None
    assert found.split("-")[1:3] == [f"{creating.get_span_context().trace_id:032x}",
                                     f"{creating.get_span_context().span_id:016x}"]
    assert found == await _stored(temporal_env, workflow_id)


async def test_a_workflow_started_elsewhere_is_described_once(
        client: Client, counted: CountedDescribes, started: list[str],
        temporal_env: WorkflowEnvironment) -> None:
    elsewhere = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"
    workflow_id = await _start(client, started, through_api=False,
                               memo={tracing.TRACEPARENT: elsewhere})
    handle = client.get_workflow_handle(workflow_id)
    with _span("POST /v1/webhooks/stripe"):
        first = await workflow_start.operation_traceparent(handle)
    with _span("POST /v1/webhooks/stripe"):
        again = await workflow_start.operation_traceparent(handle)
    assert first == again == elsewhere
    assert counted.described == [workflow_id]


async def test_a_workflow_without_a_traceparent_is_described_each_time(
        client: Client, counted: CountedDescribes, started: list[str],
        temporal_env: WorkflowEnvironment) -> None:
    workflow_id = await _start(client, started, through_api=False)
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(2):
        with _span("POST /v1/webhooks/stripe"):
            assert await workflow_start.operation_traceparent(handle) is None
    assert counted.described == [workflow_id, workflow_id]


async def test_without_a_trace_nothing_is_looked_up(
        client: Client, counted: CountedDescribes, started: list[str],
        temporal_env: WorkflowEnvironment) -> None:
    with _span("POST /v1/deposits"):
        workflow_id = await _start(client, started, through_api=True)
    # Telemetry off: no current span, so no traceparent, known or not.
    assert not trace.get_current_span().get_span_context().is_valid
    assert await workflow_start.operation_traceparent(
        client.get_workflow_handle(workflow_id)) is None
    assert counted.described == []


async def test_past_its_bound_the_oldest_known_workflow_is_described_again(
        client: Client, counted: CountedDescribes, started: list[str],
        temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow_start, "_TRACEPARENTS_MAX", 2)
    monkeypatch.setattr(workflow_start, "_traceparents", {})
    for _ in range(3):
        with _span("POST /v1/deposits"):
            await _start(client, started, through_api=True)
    assert len(workflow_start._traceparents) == 2
    for workflow_id in reversed(started):   # the newest two are known, the oldest is not
        with _span("POST /v1/webhooks/stripe"):
            assert await workflow_start.operation_traceparent(
                client.get_workflow_handle(workflow_id)) == await _stored(temporal_env, workflow_id)
    assert counted.described == [started[0]]
