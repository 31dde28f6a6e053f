"""Observability end to end on the real stack: one trace per business operation, /metrics of
the API and of the worker, log lines that carry their trace and say nothing secret.

The worker here is the real worker entrypoint (workers/main.py `run`), so its Temporal client
carries the tracing interceptor and its /metrics includes the Temporal SDK's runtime metrics.
Spans go to an in-memory exporter (tests/support/telemetry.py).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from settlepay.observability import metrics
from tests.support import kyc as kyc_steps
from tests.support import withdrawals as withdrawal_steps
from tests.support.deposits import post_deposit, wait_for_status
from tests.support.factories import (
    fund,
    ledger_violations,
    make_player,
    mark_kyc_verified,
    wait_until,
)
from tests.support.leftovers import close_open_money_workflows
from tests.support.stack import KYC_SECRET, STRIPE_KEY, STRIPE_WEBHOOK_SECRET
from tests.support.telemetry import ancestors, captured_logs, running_worker, spans_by_id

ROOT = Path(__file__).resolve().parents[2]
TEST_CARD = "4242424242424242"


def _server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan | None:
    return next((s for s in spans if s.kind == SpanKind.SERVER and s.name == name), None)


def _is_sql(span: ReadableSpan) -> bool:
    return (span.attributes or {}).get("db.system") == "postgresql" or \
        (span.attributes or {}).get("db.system.name") == "postgresql"


def _is_http_client(span: ReadableSpan, base_url: str) -> bool:
    attributes = span.attributes or {}
    url = str(attributes.get("http.url") or attributes.get("url.full") or "")
    return span.kind == SpanKind.CLIENT and url.startswith(base_url)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _names(spans: list[ReadableSpan]) -> set[str]:
    return {span.name for span in spans}


async def test_a_deposit_is_one_trace_from_the_api_through_the_workflow_into_sql_and_http(
        stack, http, recorder):
    player = make_player(stack.engine)
    async with running_worker(stack.settings):
        answer = await post_deposit(http, player, amount=2_500)
        assert answer.status_code == 202, answer.text
        deposit_id = answer.json()["id"]
        assert (await wait_for_status(http, player, deposit_id))["status"] == "succeeded"

        def credit_ran() -> list[ReadableSpan]:
            return [s for s in recorder.spans() if s.name.startswith("RunActivity:")
                    and "credit" in s.name.lower()]
        await wait_until(credit_ran)

    api = _server_span(recorder.spans(), "POST /v1/deposits")
    assert api is not None, sorted(_names(recorder.spans()))
    spans = recorder.trace_of(api)
    index = spans_by_id(spans)
    names = _names(spans)
    # One connected tree: every span's parent is in the trace, but the outermost one's.
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in index]
    assert len(roots) == 1, [s.name for s in roots]
    assert api in (roots[0], *[s for s in spans if roots[0] in ancestors(api, index)])

    def below_api(span: ReadableSpan) -> bool:
        return api in ancestors(span, index)

    # API -> StartWorkflow (the client's interceptor) -> the workflow's spans: RunWorkflow
    # and each StartActivity -> RunActivity on the worker (the context rides in the headers).
    start = [s for s in spans if s.name == "StartWorkflow:Deposit"]
    assert start and below_api(start[0]), names
    run = [s for s in spans if s.name == "RunWorkflow:Deposit"]
    assert run and start[0] in ancestors(run[0], index), names
    activities = [s for s in spans if s.name.startswith("RunActivity:")]
    assert {s.name for s in activities} >= {"RunActivity:deposit.check_gates",
                                            "RunActivity:deposit.create_payment",
                                            "RunActivity:deposit.credit_player"}, names
    assert all(start[0] in ancestors(s, index) for s in activities)
    assert all(index[s.parent.span_id].name.startswith("StartActivity:") for s in activities)
    # Into the database and out to the gateway, under the activities that did it.
    sql = [s for s in spans if _is_sql(s) and any(a in activities for a in ancestors(s, index))]
    assert sql, names
    stripe_calls = [s for s in spans if _is_http_client(s, stack.stripe_url)]
    assert stripe_calls and all(any(a in activities for a in ancestors(s, index))
                                for s in stripe_calls), names
    assert ledger_violations(stack.engine) == []

    # The Stripe webhook is the provider's request: a trace of its own (a card paid at once is
    # not signalled: the workflow has the answer from the call), its SQL under it.
    webhook = _server_span(recorder.spans(), "POST /v1/webhooks/stripe")
    assert webhook is not None
    webhook_trace = recorder.trace_of(webhook)
    assert webhook_trace != spans
    assert any(_is_sql(s) and webhook in ancestors(s, spans_by_id(webhook_trace))
               for s in webhook_trace)


async def test_a_withdrawal_second_factor_update_is_one_trace_down_to_its_activity(
        stack, http, recorder):
    player = withdrawal_steps.ready_player(stack, cash=5_000)
    await close_open_money_workflows(stack)     # none may reach its outcome in this count
    paid_before = _sample("settlepay_withdrawals_total", outcome="paid")
    with captured_logs() as captured:
        async with running_worker(stack.settings):
            created = await withdrawal_steps.start(http, player, 1_000)
            withdrawal_id = created["id"]
            await withdrawal_steps.wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
            code = await withdrawal_steps.code_for(stack, player, withdrawal_id)
            answer = await withdrawal_steps.submit(http, player, withdrawal_id, code)
            assert answer.status_code == 200, answer.text
            await withdrawal_steps.wait_state(http, player, withdrawal_id,
                                              withdrawal_steps.FINAL)
    assert _sample("settlepay_withdrawals_total", outcome="paid") == paid_before + 1
    # The workflow logs each step boundary with its workflow id (workflow.logger).
    steps = [e for e in captured.events() if e["event"] == "withdrawal step"
             and e.get("workflow_id") == f"withdrawal-{withdrawal_id}"]
    assert [e["withdrawal_state"] for e in steps][-1] == "paid", steps

    # The second-factor request is nested in the withdrawal's trace: its handling span is a
    # child of the span of the request that created the withdrawal (POST /v1/withdrawals, its
    # traceparent kept in the workflow's memo), linked to the POST .../2fa request's own trace.
    api = next(s for s in recorder.spans() if s.kind == SpanKind.SERVER
               and s.name == "POST /v1/withdrawals/{withdrawal_id}/2fa")
    handling = [s for s in recorder.spans() if s.name == "withdrawal second factor"]
    assert len(handling) == 1, _names(recorder.spans())
    workflow_trace = recorder.trace_of(handling[0])
    index = spans_by_id(workflow_trace)
    started = _server_span(workflow_trace, "POST /v1/withdrawals")
    assert started is not None, _names(workflow_trace)
    assert handling[0].context.trace_id == started.context.trace_id != api.context.trace_id
    assert started in ancestors(handling[0], index)
    assert [link.context.span_id for link in handling[0].links] == [api.context.span_id]
    # Inside it: the client's StartWorkflowUpdate, then the workflow's HandleUpdate (linked to
    # it) and the activity checking the code with its SQL, all in the one trace.
    update = [s for s in workflow_trace if s.name == "StartWorkflowUpdate:submit_second_factor"]
    assert update and handling[0] in ancestors(update[0], index), _names(workflow_trace)
    handled = [s for s in workflow_trace if s.name == "HandleUpdate:submit_second_factor"]
    assert handled and started in ancestors(handled[0], index), _names(workflow_trace)
    assert any(link.context.span_id == update[0].context.span_id
               for link in handled[0].links), handled
    verify = [s for s in workflow_trace
              if s.name == "RunActivity:withdrawal.verify_second_factor"]
    assert verify and started in ancestors(verify[0], index), _names(workflow_trace)
    assert any(_is_sql(s) and verify[0] in ancestors(s, index) for s in workflow_trace)
    # The 2fa request's own trace keeps its server span and its SQL (who may see it).
    assert any(_is_sql(s) and api in ancestors(s, spans_by_id(recorder.trace_of(api)))
               for s in recorder.trace_of(api))
    assert ledger_violations(stack.engine) == []


async def test_a_deposit_webhook_signal_is_nested_in_the_deposit_trace(stack, http, recorder):
    player = make_player(stack.engine)
    # The payment settles 50 ms after confirmation while the create call's answer takes 600 ms:
    # Stripe's succeeded webhook is signalled to the running workflow.
    stack.faults(async_settle_ms=50, response_delay_ms=600, paths=["/v1/payment_intents"],
                 methods=["POST"])
    try:
        async with running_worker(stack.settings):
            answer = await post_deposit(http, player, amount=1_700)
            deposit_id = answer.json()["id"]
            assert (await wait_for_status(http, player, deposit_id))["status"] == "succeeded"
            await wait_until(lambda: [s for s in recorder.spans()
                                      if s.name == "HandleSignal:payment_event"])
    finally:
        stack.faults()

    created = _server_span(recorder.spans(), "POST /v1/deposits")
    assert created is not None
    handling = [s for s in recorder.spans() if s.name == "deposit payment event"]
    assert len(handling) == 1, _names(recorder.spans())
    spans = recorder.trace_of(created)
    index = spans_by_id(spans)
    # The webhook's handling span: in the deposit's trace, under the creating request's span,
    # linked to the webhook request (a trace of its own, Stripe's request).
    assert handling[0].context.trace_id == created.context.trace_id
    assert created in ancestors(handling[0], index)
    webhooks = {s.context.span_id: s for s in recorder.spans()
                if s.kind == SpanKind.SERVER and s.name == "POST /v1/webhooks/stripe"}
    linked = [webhooks.get(link.context.span_id) for link in handling[0].links]
    assert len(linked) == 1 and linked[0] is not None
    assert linked[0].context.trace_id != created.context.trace_id
    # Inside it: the client's SignalWorkflow, the workflow's HandleSignal, and the SQL that
    # records the event's outcome; the workflow's activities in the same trace.
    signal = [s for s in spans if s.name == "SignalWorkflow:payment_event"]
    assert signal and handling[0] in ancestors(signal[0], index), _names(spans)
    handled = [s for s in spans if s.name == "HandleSignal:payment_event"]
    assert handled and created in ancestors(handled[0], index), _names(spans)
    assert any(_is_sql(s) and handling[0] in ancestors(s, index) for s in spans)
    assert {"RunWorkflow:Deposit", "RunActivity:deposit.credit_player"} <= _names(spans)
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in index]
    assert len(roots) == 1, [s.name for s in roots]
    assert ledger_violations(stack.engine) == []


async def test_log_lines_of_a_request_carry_its_trace_id_and_request_id(stack, http, recorder):
    player = make_player(stack.engine)
    with captured_logs() as captured:
        answer = await http.get(f"/v1/players/{player.id}", headers={
            **player.headers, "X-Request-Id": "req-observability-1"})
        missing = await http.get(f"/v1/deposits/dep_{uuid.uuid4().hex}", headers=player.headers)
    assert answer.status_code == 200 and missing.status_code == 404
    assert answer.headers["x-request-id"] == "req-observability-1"
    trace_id = answer.headers["x-trace-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id != "0" * 32
    server = _server_span(recorder.spans(), "GET /v1/players/{player_id}")
    assert server is not None and format(server.context.trace_id, "032x") == trace_id

    events = captured.events()
    mine = [e for e in events if e.get("request_id") == "req-observability-1"]
    assert [e["event"] for e in mine] == ["request"]
    assert mine[0]["trace_id"] == trace_id and mine[0]["route"] == "/v1/players/{player_id}"
    assert mine[0]["status"] == 200
    # The 404 problem+json is logged with ITS trace id.
    problem = [e for e in events if e["event"] == "problem answered"
               and e.get("request_id") == missing.headers["x-request-id"]]
    assert problem and problem[0]["trace_id"] == missing.headers["x-trace-id"]
    assert problem[0]["problem_code"] == "deposit_not_found" and problem[0]["status"] == 404


def _families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def _samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _dashboard_metrics() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "deploy" / "grafana").rglob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard.get("panels", []):
            for target in panel.get("targets", []):
                names |= set(re.findall(r"\b((?:settlepay|temporal)_[a-z0-9_]+)",
                                        target["expr"]))
    return names


def _family_of(name: str, families: set[str]) -> str | None:
    for candidate in (name, *(name.removesuffix(s) for s in
                               ("_bucket", "_sum", "_count", "_total", "_created"))):
        if candidate in families:
            return candidate
    return None


async def test_after_a_deposit_the_api_and_worker_metrics_expose_the_named_metrics(
        stack, http, recorder):
    player = make_player(stack.engine)
    async with running_worker(stack.settings) as settings:
        answer = await post_deposit(http, player, amount=1_500)
        deposit_id = answer.json()["id"]
        assert (await wait_for_status(http, player, deposit_id))["status"] == "succeeded"
        worker_url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
        worker_text = (await wait_until(lambda: _with_sdk_metrics(worker_url)))
        api_text = (await http.get("/metrics")).text

    api_samples = _samples(api_text)
    assert any(line.startswith('settlepay_http_requests_total{method="POST",route="/v1/deposits"'
                               ',status="2xx"}') for line in api_samples), api_text[:2000]
    assert any(line.startswith("settlepay_http_request_seconds_bucket{") for line in api_samples)
    worker_samples = _samples(worker_text)
    assert any(line.startswith('settlepay_ledger_posting_seconds_count{operation="post"}')
               for line in worker_samples)
    assert any(line.startswith("settlepay_outbox_lag_seconds ") for line in worker_samples)
    assert any(line.startswith('settlepay_ledger_open_holds{age="lt_10m"}')
               for line in worker_samples)
    assert any(line.startswith("temporal_") for line in worker_samples)
    # Every business metric is defined in both processes; no label names an id.
    for text in (api_text, worker_text):
        assert set(metrics.BUSINESS_METRICS) - {"settlepay_outbox_lag_seconds",
                                                "settlepay_outbox_unpublished_events",
                                                "settlepay_ledger_open_holds"} <= _families(text)
        assert player.id not in text and deposit_id not in text
    assert set(metrics.BUSINESS_METRICS) <= _families(worker_text)
    # Every metric the Grafana dashboard names is exported by the API or the worker.
    exported = _families(api_text) | _families(worker_text)
    named = _dashboard_metrics()
    assert named, "the dashboard names no metric"
    assert {n for n in named if _family_of(n, exported) is None} == set()


def _with_sdk_metrics(url: str) -> str | None:
    text = httpx.get(url, timeout=5).text
    return text if "temporal_workflow_completed" in text else None


async def test_no_log_line_holds_a_secret_a_code_card_data_or_personal_data(stack, http,
                                                                               recorder):
    secret_name = ("Zephyrine", "Quillfeather")
    with captured_logs() as captured:
        # A deposit by card, a withdrawal with its one-time code, a KYC document.
        player = make_player(stack.engine, first_name=secret_name[0], last_name=secret_name[1],
                             date_of_birth=date(1987, 3, 14))
        mark_kyc_verified(stack.engine, player)
        fund(stack.engine, player, 5_000)
        kyc_player = make_player(stack.engine, first_name="Ottoline", last_name="Brackenridge",
                                 date_of_birth=date(1979, 11, 2))
        async with running_worker(stack.settings):
            answer = await post_deposit(http, player, amount=2_000,
                                        payment_method="pm_card_visa")
            deposit_id = answer.json()["id"]
            assert (await wait_for_status(http, player, deposit_id))["status"] == "succeeded"
            created = await withdrawal_steps.start(http, player, 1_000)
            await withdrawal_steps.wait_state(http, player, created["id"], ("awaiting_2fa",))
            code = await withdrawal_steps.code_for(stack, player, created["id"])
            wrong = "000000" if code != "000000" else "111111"
            assert (await withdrawal_steps.submit(http, player, created["id"], wrong)
                    ).status_code == 422
            assert (await withdrawal_steps.submit(http, player, created["id"], code)
                    ).status_code == 200
            await withdrawal_steps.wait_state(http, player, created["id"],
                                              withdrawal_steps.FINAL)
            submitted = await kyc_steps.submit(http, kyc_player, number="X99887766")
            assert submitted.status_code in (200, 201, 202), submitted.text
            await kyc_steps.wait_kyc(http, kyc_player, kyc_steps.FINAL)
        # A card number and secrets inside an error the API logs.
        bad = await http.post("/v1/deposits", headers={
            **player.headers, "Idempotency-Key": uuid.uuid4().hex},
            json={"player_id": player.id, "amount": 1_000, "currency": "USD",
                  "payment_method": TEST_CARD, "email": player.email})
        assert bad.status_code in (400, 422), bad.text

    lines = captured.lines()
    assert len(lines) > 20, lines
    kyc_steps_logged = [e for e in captured.events() if e["event"] == "kyc step"
                        and e.get("workflow_id", "").startswith(f"kyc-{kyc_player.id}")]
    assert kyc_steps_logged, "the KYC workflow logs its steps with its workflow id"
    api_keys = [h.removeprefix("Bearer ") for p in (player, kyc_player)
                for h in (p.headers["Authorization"], p.operator["Authorization"])]
    forbidden = [*api_keys, STRIPE_KEY, STRIPE_WEBHOOK_SECRET, KYC_SECRET,
                 stack.settings.otp_code_secret, code, wrong, TEST_CARD, "4242 4242",
                 player.email, kyc_player.email, *secret_name, "Ottoline", "Brackenridge",
                 "1987-03-14", "1979-11-02", "X99887766"]
    leaks = {value: [line for line in lines if value in line] for value in forbidden}
    assert {value: found[:2] for value, found in leaks.items() if found} == {}


async def test_a_method_of_the_clients_choice_is_one_label_value(stack, http):
    """The method label is a bounded set: a method the API serves nowhere (the server's
    parser takes WebDAV's and others') is counted under _OTHER, not under its own name."""
    before = _sample("settlepay_http_requests_total", method="_OTHER", route="unmatched",
                     status="4xx")
    for method in ("PROPFIND", "MKCOL"):
        answer = await http.request(method, "/v1/nothing-here")
        assert 400 <= answer.status_code < 500 and "x-request-id" in answer.headers
    text = (await http.get("/metrics")).text
    assert _sample("settlepay_http_requests_total", method="_OTHER", route="unmatched",
                   status="4xx") == before + 2
    assert "PROPFIND" not in text and "MKCOL" not in text
