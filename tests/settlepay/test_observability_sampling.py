"""Head sampling at the API's edge (api/telemetry.py UnsampledFastPath, tracing.head_decision):
a request the sampler drops takes the fast path, yet it answers, logs and propagates the same
trace ids as a recorded one; the requests recorded are exactly those the sampler keeps.

The recorder (tests/support/telemetry.py) records every trace; these tests set the process's
ratio lower for their requests and put it back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind

from settlepay.observability import tracing
from tests.support.deposits import post_deposit, wait_for_status
from tests.support.factories import ledger_violations, make_player
from tests.support.telemetry import captured_logs, running_worker

ROUTE = "GET /v1/players/{player_id}"


@pytest.fixture
def head_sampler(recorder) -> Iterator[tracing.HeadSampler]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    sampler = provider.sampler
    assert isinstance(sampler, tracing.HeadSampler)
    assert isinstance(provider.id_generator, tracing.IdGenerator)
    ratio = sampler.ratio
    try:
        yield sampler
    finally:
        sampler.set_ratio(ratio)


def _server_spans(recorder) -> dict[str, object]:
    return {format(s.context.trace_id, "032x"): s for s in recorder.spans()
            if s.kind == SpanKind.SERVER and s.name == ROUTE}


async def test_the_requests_recorded_are_those_the_head_sampler_keeps_and_all_carry_trace_ids(
        stack, http, recorder, head_sampler):
    player = make_player(stack.engine)
    head_sampler.set_ratio(0.5)
    bound = TraceIdRatioBased(0.5).bound
    answered = []
    with captured_logs() as captured:
        for _ in range(40):
            answer = await http.get(f"/v1/players/{player.id}", headers=player.headers)
            assert answer.status_code == 200, answer.text
            answered.append((answer.headers["x-trace-id"], answer.headers["x-request-id"]))
    trace_ids = [trace_id for trace_id, _ in answered]
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) and t != "0" * 32 for t in trace_ids)
    assert len(set(trace_ids)) == 40
    kept = {t for t in trace_ids if int(t, 16) & TraceIdRatioBased.TRACE_ID_LIMIT < bound}
    recorded = _server_spans(recorder)
    # Exactly the sampler's choice (decided on the answered trace id), and both kinds present
    # (40 requests at 0.5: each side empty with probability 2**-40).
    assert set(recorded) == kept and 0 < len(kept) < 40
    # One server span per request: FastAPI's native telemetry stays off beside the
    # instrumentation (it finds the instrumentation's middleware behind the fast path).
    assert len([s for s in recorder.spans() if s.name == ROUTE]) == len(kept)
    assert not [s.name for s in recorder.spans() if s.name.startswith("fastapi.")]
    # A dropped request made no span at all (its SQL neither), a kept one its whole tree.
    dropped = set(trace_ids) - kept
    assert not any(format(s.context.trace_id, "032x") in dropped for s in recorder.spans())
    # Every request's log line carries the trace id it answered, dropped or kept.
    lines = {e["request_id"]: e for e in captured.events() if e["event"] == "request"}
    assert all(lines[request_id]["trace_id"] == trace_id for trace_id, request_id in answered)


async def test_a_caller_traceparent_decides_and_its_trace_id_is_kept(stack, http, recorder,
                                                                     head_sampler):
    player = make_player(stack.engine)
    head_sampler.set_ratio(0.0)   # a new trace would never be recorded
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    with suppress_http_instrumentation():   # the test's own client sends our traceparent
        unsampled = await http.get(f"/v1/players/{player.id}", headers={
            **player.headers, "traceparent": f"00-{caller}-00f067aa0ba902b7-00"})
        sampled = await http.get(f"/v1/players/{player.id}", headers={
            **player.headers, "traceparent": f"00-{'1' * 32}-00f067aa0ba902b7-01"})
        new = await http.get(f"/v1/players/{player.id}", headers=player.headers)
    assert unsampled.headers["x-trace-id"] == caller
    assert sampled.headers["x-trace-id"] == "1" * 32
    assert new.headers["x-trace-id"] not in (caller, "1" * 32)
    recorded = _server_spans(recorder)
    # Only the caller's sampled trace is recorded: a child of the caller's span.
    assert set(recorded) == {"1" * 32}
    assert recorded["1" * 32].parent.span_id == 0x00f067aa0ba902b7


def test_head_decision_is_the_sdks_decision_on_the_same_trace_id(head_sampler):
    provider = trace.get_tracer_provider()
    tracer = provider.get_tracer("test")
    head_sampler.set_ratio(0.5)
    decisions = set()
    for _ in range(64):
        empty = trace.set_span_in_context(trace.INVALID_SPAN)
        span = tracing.head_decision(empty)
        if span is None:   # kept: the next root span started here gets the decided trace id
            started = tracer.start_span("root", context=empty)
            assert started.is_recording()
            decisions.add("kept")
            started.end()
        else:
            assert not span.is_recording() and span.get_span_context().is_valid
            assert not span.get_span_context().trace_flags.sampled
            # the SDK, asked about that trace id, drops it too
            assert not TraceIdRatioBased(0.5).should_sample(
                None, span.get_span_context().trace_id, "root").decision.is_sampled()
            decisions.add("dropped")
    assert decisions == {"kept", "dropped"}


async def test_an_unsampled_deposit_keeps_its_trace_id_through_the_workflow_and_activities(
        stack, http, recorder, head_sampler):
    """The API's request dropped by the sampler: the workflow makes no span (the worker's
    WorkflowTracing) yet hands the request's trace on, so every step's log line, the
    workflow's and the activities', carries the trace id the POST answered."""
    player = make_player(stack.engine)
    head_sampler.set_ratio(0.0)
    with captured_logs() as captured:
        async with running_worker(stack.settings):
            answer = await post_deposit(http, player, amount=1_100)
            assert answer.status_code == 202, answer.text
            deposit_id = answer.json()["id"]
            assert (await wait_for_status(http, player, deposit_id))["status"] == "succeeded"
    trace_id = answer.headers["x-trace-id"]
    # (the SDK's own debug lines, e.g. "Starting activity", come before any context)
    mine = [e for e in captured.events() if e.get("workflow_id") == f"deposit-{deposit_id}"
            and e["level"] != "debug"]
    steps = [e for e in mine if e["event"] == "deposit step"]
    activities = [e for e in mine if e.get("activity_type")]
    assert [e["deposit_step"] for e in steps] == [
        "deposit.check_gates", "deposit.create_payment", "deposit.credit_player"]
    assert {e["activity_type"] for e in activities} >= {"deposit.credit_player"}
    assert {e.get("trace_id") for e in mine} == {trace_id}
    assert not [s.name for s in recorder.spans() if format(s.context.trace_id, "032x") == trace_id]
    assert ledger_violations(stack.engine) == []


def test_continuing_an_unsampled_operation_makes_the_span_the_sdk_would_without_recording(
        recorder, head_sampler):
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    head_sampler.set_ratio(1.0)   # the request itself is recorded: only its parent decides
    operation = "0af7651916cd43dd8448eb211c80319c"
    token = otel_context.attach(baggage.set_baggage("tenant", "p-1"))
    try:
        with tracing._tracer.start_as_current_span("POST /v1/webhooks/stripe") as request:
            with tracing.continuing("deposit payment event",
                                    f"00-{operation}-b7ad6b7169203331-00") as span:
                context = span.get_span_context()
                assert trace.get_current_span() is span and not span.is_recording()
                assert format(context.trace_id, "032x") == operation
                assert not context.trace_flags.sampled and context.span_id not in (
                    0, 0xb7ad6b7169203331, request.get_span_context().span_id)
                assert baggage.get_baggage("tenant") == "p-1"   # the current context's
            assert trace.get_current_span() is request
            # A sampled operation: the SDK's span, recorded, linked to the request.
            with tracing.continuing("deposit payment event",
                                    f"00-{operation}-b7ad6b7169203331-01") as span:
                assert span.is_recording()
                assert format(span.get_span_context().trace_id, "032x") == operation
    finally:
        otel_context.detach(token)
    names = [(s.name, format(s.context.trace_id, "032x")) for s in recorder.spans()
             if format(s.context.trace_id, "032x") == operation]
    assert names == [("deposit payment event", operation)]   # only the sampled one
    recorded = next(s for s in recorder.spans() if s.name == "deposit payment event"
                    and format(s.context.trace_id, "032x") == operation)
    assert [link.context.span_id for link in recorded.links] == [
        request.get_span_context().span_id]
