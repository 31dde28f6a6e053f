"""One connected trace per business operation, beyond deposits, withdrawals and settlement
(tests/settlepay/test_observability.py, test_observability_flows.py): a reconciliation run
asked for over the API (through the Temporal client and worker into its activity, its SQL and
its reads of the gateway) and a partner webhook delivery (the dispatcher's batch: each
message's delivery with its HTTP POST, then the transaction recording the attempts).

Spans go to the in-memory recorder (tests/support/telemetry.py), every trace recorded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from settlepay.config import Settings
from tests.support import reconciliation as rec
from tests.support.factories import make_player, wait_until
from tests.support.stack import Stack
from tests.support.telemetry import SpanRecorder, ancestors, running_worker, spans_by_id
from tests.support.webhooks import (
    attempts_of,
    emit,
    make_endpoint,
    new_partner,
    running_receiver,
    webhook_settings,
)
from webhooks.dispatcher import Dispatcher


def _roots(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    index = spans_by_id(spans)
    return [s for s in spans if s.parent is None or s.parent.span_id not in index]


def _is_sql(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return "postgresql" in (attributes.get("db.system"), attributes.get("db.system.name"))


def _url(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("http.url") or attributes.get("url.full") or "")


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def test_a_reconciliation_run_is_one_trace_from_the_api_into_its_sql_and_gateway_reads(
        stack: Stack, http, recorder: SpanRecorder) -> None:
    start = await rec.next_second()
    player = make_player(stack.engine)
    rec.paid_deposit(stack, player, 700)
    until = await rec.next_second()
    async with running_worker(stack.settings):
        made = await http.post("/v1/reconciliation/runs", headers=player.operator,
                               json={"since": _iso(start), "until": _iso(until),
                                     "grace_seconds": 0})
        assert made.status_code == 202, made.text
        run_id = made.json()["id"]

        async def completed() -> bool:
            got = await http.get(f"/v1/reconciliation/runs/{run_id}", headers=player.operator)
            return got.json()["status"] == "completed"
        await wait_until(completed, timeout=60)
        await wait_until(lambda: [s for s in recorder.spans()
                                  if s.name == "RunWorkflow:Reconciliation"])

    api = next(s for s in recorder.spans() if s.kind == SpanKind.SERVER
               and s.name == "POST /v1/reconciliation/runs")
    spans = recorder.trace_of(api)
    index = spans_by_id(spans)
    names = sorted({s.name for s in spans})
    # One tree: its root is the API's span, or the test client's POST that carried it.
    roots = _roots(spans)
    assert len(roots) == 1 and roots[0] in (api, *ancestors(api, index)), [
        s.name for s in roots]
    start_span = [s for s in spans if s.name == "StartWorkflow:Reconciliation"]
    assert start_span and api in ancestors(start_span[0], index), names
    workflow = [s for s in spans if s.name == "RunWorkflow:Reconciliation"]
    assert workflow and start_span[0] in ancestors(workflow[0], index), names
    activity = [s for s in spans if s.name == "RunActivity:reconciliation.run"]
    assert len(activity) == 1 and start_span[0] in ancestors(activity[0], index), names
    # The run's SQL (reading our side, recording the run) and its reads of the gateway's
    # lists, inside the activity.
    assert any(_is_sql(s) and activity[0] in ancestors(s, index) for s in spans), names
    gateway = [s for s in spans if s.kind == SpanKind.CLIENT
               and _url(s).startswith(stack.stripe_url)]
    assert gateway and all(activity[0] in ancestors(s, index) for s in gateway), names


async def test_a_webhook_delivery_is_one_trace_of_its_messages_http_and_recording(
        engine, settings: Settings, recorder: SpanRecorder) -> None:
    partner, hook = new_partner(), uuid.uuid4().hex[:12]
    wh_settings = webhook_settings(settings)
    with running_receiver() as receiver:
        endpoint, secret = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
        receiver.configure(hook, secrets=[secret])
        for n in range(2):
            emit(engine, partner, "deposit.succeeded", {"deposit": n})
        async with Dispatcher(engine, wh_settings) as dispatcher:
            await dispatcher.drain()
        assert len(receiver.deliveries(hook)) == 2
    assert [a["status"] for a in attempts_of(engine, endpoint["id"])] == ["succeeded"] * 2

    # `drain` delivers whatever is due in the database: find the batch that carried ours.
    receiver_url = receiver.hook(hook)
    posts = [s for s in recorder.spans() if s.kind == SpanKind.CLIENT
             and _url(s).startswith(receiver_url)]
    assert len(posts) == 2, [s.name for s in recorder.spans()]
    spans = recorder.trace_of(posts[0])
    index = spans_by_id(spans)
    assert {s.context.trace_id for s in posts} == {posts[0].context.trace_id}
    [batch] = _roots(spans)
    assert batch.name == "webhooks deliver" and batch.attributes["webhooks.lane"] == "first"
    deliveries = [s for s in spans if s.name == "webhook delivery"]
    assert len(deliveries) == batch.attributes["webhooks.messages"] >= 2
    for post in posts:
        [delivery] = [a for a in ancestors(post, index) if a.name == "webhook delivery"]
        assert index[delivery.parent.span_id] is batch
        assert delivery.attributes["webhooks.event_type"] == "deposit.succeeded"
        assert delivery.attributes["webhooks.outcome"] == "succeeded"
        assert delivery.attributes["http.response.status_code"] == 200
    # The attempts recorded in one transaction, in the same trace, linked to each delivery.
    [record] = [s for s in spans if s.name == "webhooks record"]
    assert index[record.parent.span_id] is batch
    assert {link.context.span_id for link in record.links} == {
        d.context.span_id for d in deliveries}
    assert any(_is_sql(s) and record in ancestors(s, index) for s in spans)
