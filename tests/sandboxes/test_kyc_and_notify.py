"""The KYC and notification sandboxes run as `python -m sandboxes.<name> --port N`; the KYC
sandbox delivers a verdict for any check on demand (a late answer to a silent check)."""

from __future__ import annotations

import subprocess
import sys

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.kyc import verify_webhook
from sandboxes.kyc import create_app as create_kyc_sandbox
from sandboxes.kyc.app import DEFAULT_SECRET
from tests.support.net import free_port, wait_http
from tests.support.servers import serve_asgi

MESSAGE = {"to": "a@example.test", "subject": "s", "body": "code 123456"}


def test_sandboxes_start_as_modules_and_answer():
    for name in ("kyc", "notify"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = subprocess.Popen([sys.executable, "-m", f"sandboxes.{name}",
                                    "--port", str(port)])
        try:
            wait_http(f"{base}/healthz", timeout=20)
            assert httpx.get(f"{base}/healthz").json() == {"ok": True}
            if name == "notify":
                key = {"Idempotency-Key": "k1"}
                sent = httpx.post(f"{base}/v1/messages", headers=key, json=MESSAGE)
                again = httpx.post(f"{base}/v1/messages", headers=key, json=MESSAGE)
                assert sent.status_code == 201 and again.json()["id"] == sent.json()["id"]
                outbox = httpx.get(f"{base}/_sandbox/outbox").json()["data"]
                assert [m["body"] for m in outbox] == ["code 123456"]
            else:
                check = httpx.post(f"{base}/v1/checks", json={
                    "reference": "kyc-p:doc:1", "person": {},
                    "document": {"type": "passport", "number": "SILENT"}})
                assert check.status_code == 202 and check.json()["status"] == "pending"
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_a_silent_check_answers_when_told_signed_like_every_verdict():
    received: list[bytes] = []

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        verdict = verify_webhook(DEFAULT_SECRET, body, request.headers)
        received.append(body)
        return JSONResponse({"received": True, "check": verdict.check_id})

    receiver = Starlette(routes=[Route("/hook", webhook, methods=["POST"])])
    with serve_asgi(receiver) as hook_url, \
            serve_asgi(create_kyc_sandbox(webhook_url=None, delay_seconds=0.0)) as kyc_url:
        httpx.post(f"{kyc_url}/_sandbox/config",
                   json={"webhook_url": f"{hook_url}/hook"}).raise_for_status()
        check = httpx.post(f"{kyc_url}/v1/checks", headers={"Idempotency-Key": "kyc-p:r1:doc:1"},
                           json={"reference": "kyc-p:r1:doc:1", "person": {},
                                 "document": {"type": "passport", "number": "SILENT-1"}}).json()
        [listed] = httpx.get(f"{kyc_url}/_sandbox/checks").json()["data"]
        assert listed["idempotency_key"] == "kyc-p:r1:doc:1" and listed["status"] == "pending"
        told = httpx.post(f"{kyc_url}/_sandbox/checks/{check['id']}/verdict",
                          json={"result": "GREEN"})
        assert told.status_code == 200
        [attempt] = told.json()["attempts"]
        assert attempt["status"] == 200
        assert attempt["response"] == {"received": True, "check": check["id"]}
        assert len(received) == 1
        unknown = httpx.post(f"{kyc_url}/_sandbox/checks/chk_nope/verdict",
                             json={"result": "GREEN"})
        assert unknown.status_code == 404


def test_a_verdict_is_retried_for_the_configured_window_past_an_outage_of_the_receiver():
    """A real provider retries a verdict for hours: with `webhook_retry_seconds` the sandbox
    retries past five failed attempts (the receiver down longer than ~6 s, as an API restart in
    the chaos run), and the verdict arrives once (by default it gives up after five)."""
    answers: list[int] = []

    async def webhook(request: Request) -> JSONResponse:
        verify_webhook(DEFAULT_SECRET, await request.body(), request.headers)
        answers.append(503 if len(answers) < 5 else 200)
        return JSONResponse({"received": answers[-1] == 200}, status_code=answers[-1])

    receiver = Starlette(routes=[Route("/hook", webhook, methods=["POST"])])
    with serve_asgi(receiver) as hook_url, \
            serve_asgi(create_kyc_sandbox(webhook_url=f"{hook_url}/hook", delay_seconds=3600.0,
                                          webhook_retry_seconds=30.0)) as kyc_url:
        check = httpx.post(f"{kyc_url}/v1/checks", json={
            "reference": "kyc-p:r1:doc:1", "person": {},
            "document": {"type": "passport", "number": "SILENT-2"}}).json()
        told = httpx.post(f"{kyc_url}/_sandbox/checks/{check['id']}/verdict",
                          json={"result": "GREEN"}, timeout=60)
        attempts = told.json()["attempts"]
        assert [a["status"] for a in attempts] == [503] * 5 + [200]
        assert answers == [503] * 5 + [200]

