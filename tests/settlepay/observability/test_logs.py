"""Log lines carry the trace they belong to, even from the handler of an unexpected error
(which may run after the request's span ended: trace_id 0 there would be useless)."""

from __future__ import annotations

import httpx

from api.app import create_app
from tests.support.servers import serve_asgi
from tests.support.telemetry import captured_logs


def test_an_unexpected_error_is_answered_and_logged_with_its_trace_id(settings, engine,
                                                                      recorder):
    app = create_app(settings, engine=engine)

    @app.get("/v1/_explode")
    def explode() -> None:
        raise RuntimeError("boom for ada@example.test card 4242424242424242")

    with serve_asgi(app) as url, captured_logs() as captured:
        answer = httpx.get(f"{url}/v1/_explode", headers={"X-Request-Id": "req-explode"})
    assert answer.status_code == 500
    body = answer.json()
    assert body["code"] == "internal_error"
    trace_id = body["trace_id"]
    assert len(trace_id) == 32 and trace_id != "0" * 32
    server = next(s for s in recorder.spans() if s.name == "GET /v1/_explode")
    assert format(server.context.trace_id, "032x") == trace_id

    errors = [e for e in captured.events() if e["level"] == "error"]
    assert len(errors) == 1, captured.lines()
    error = errors[0]
    assert error["trace_id"] == trace_id and error["request_id"] == "req-explode"
    assert "RuntimeError" in error["exception"]
    assert "ada@example.test" not in error["exception"] and "4242424242424242" not in \
        error["exception"]
    request = [e for e in captured.events() if e["event"] == "request"]
    assert request and request[0]["status"] == 500 and request[0]["trace_id"] == trace_id
