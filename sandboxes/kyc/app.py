"""The KYC sandbox's ASGI app (Starlette): checks in memory, verdicts by signed webhook.

Provider API: `POST /v1/checks` (202, pending; idempotent by `Idempotency-Key`) and
`GET /v1/checks/{id}` (the check; once decided, its verdict: result, next, reason; 404 for a
check it does not know), as real providers let a client poll for a webhook it missed.
Test controls under /_sandbox/: `config` (webhook_url None: verdicts are decided but never
delivered; `error_status` 5xx/429: the provider API answers that, an outage), `checks`,
`checks/{id}/verdict` (deliver a verdict now), `webhooks` (delivery attempts).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.kyc.webhooks import sign_webhook

DEFAULT_SECRET = "whsec_a3ljc2FuZGJveHNlY3JldGZvcmRldg=="
Verdict = tuple[str, str | None, str | None]    # result, next, reason
DEFAULT_ATTEMPTS = 5
RETRY_PAUSE_CAP = 2.0   # seconds between attempts, at most, with webhook_retry_seconds


def verdict_for(document_number: str) -> Verdict | None:
    """(result, next, reason) for a document number; None: the provider never answers."""
    number = document_number.upper()
    if "SILENT" in number:
        return None
    if "RED-FINAL" in number:
        return "RED", "FINAL", "document_forged"
    if "RED-RETRY" in number:
        return "RED", "RETRY", "document_unreadable"
    return "GREEN", None, None


def create_app(*, webhook_url: str | None = None, webhook_secret: str = DEFAULT_SECRET,
               delay_seconds: float = 2.0,
               webhook_retry_seconds: float | None = None) -> Starlette:
    """`webhook_retry_seconds`: keep retrying a failed delivery for that long (pauses growing
    to RETRY_PAUSE_CAP), as real providers retry for hours; None: 5 attempts (about 6 s)."""
    config: dict[str, Any] = {"webhook_url": webhook_url, "webhook_secret": webhook_secret,
                              "delay_seconds": delay_seconds,
                              "webhook_retry_seconds": webhook_retry_seconds,
                              "error_status": None}
    checks: dict[str, dict[str, Any]] = {}
    by_key: dict[str, dict[str, Any]] = {}
    deliveries: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    ids = itertools.count(1)

    async def answer_later(check: dict[str, Any]) -> None:
        await asyncio.sleep(config["delay_seconds"])
        verdict = verdict_for(check["document"]["number"])
        if verdict is not None:
            await deliver(check, verdict)

    async def deliver(check: dict[str, Any], verdict: Verdict) -> list[dict[str, Any]]:
        """Send the check's verdict, signed; the delivery attempts made."""
        result, next_, reason = verdict
        check.update(status="completed", result=result, next=next_, reason=reason)
        body = json.dumps({"type": "check.completed", "data": {
            "check_id": check["id"], "reference": check["reference"], "result": result,
            "next": next_, "reason": reason}}).encode()
        message_id = f"msg_{uuid.uuid4().hex}"
        attempts: list[dict[str, Any]] = []
        # Like a real provider: retry a failed delivery with growing pauses, 5 times or (with
        # webhook_retry_seconds) until that long has passed since the first attempt.
        window = config["webhook_retry_seconds"]
        until = None if window is None else time.monotonic() + window
        for attempt in itertools.count(1):
            if until is None and attempt > DEFAULT_ATTEMPTS or \
                    until is not None and attempt > 1 and time.monotonic() > until:
                break
            url = config["webhook_url"]
            record: dict[str, Any] = {"check_id": check["id"], "attempt": attempt}
            attempts.append(record)
            deliveries.append(record)
            if not url:
                record.update(status=None, error="no webhook_url configured")
                break
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    answer = await client.post(url, content=body, headers=sign_webhook(
                        config["webhook_secret"], message_id, body))
                record.update(status=answer.status_code, response=_json_or_none(answer))
                if answer.status_code < 300:
                    break
            except httpx.HTTPError as error:
                record.update(status=None, error=type(error).__name__)
            pause = 0.2 * 2 ** min(attempt, 10)
            await asyncio.sleep(pause if until is None else min(pause, RETRY_PAUSE_CAP))
        return attempts

    def outage() -> Response | None:
        """The provider API's answer while `error_status` is configured (None: healthy)."""
        status = config["error_status"]
        if status is None:
            return None
        headers = {"Retry-After": "1"} if status == 429 else None
        return JSONResponse({"error": "provider unavailable"}, status_code=status,
                            headers=headers)

    async def create_check(request: Request) -> Response:
        if (refused := outage()) is not None:
            return refused
        try:
            body = await request.json()
            reference = str(body["reference"])
            document = {"type": str(body["document"]["type"]),
                        "number": str(body["document"]["number"]),
                        "country": str(body["document"].get("country", ""))}
            person = dict(body.get("person") or {})
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send reference, person and document"},
                                status_code=400)
        key = request.headers.get("idempotency-key")
        if key and key in by_key:
            return JSONResponse(public(by_key[key]), status_code=202)
        check = {"id": f"chk_{next(ids):06d}", "reference": reference, "person": person,
                 "document": document, "status": "pending", "result": None, "next": None,
                 "reason": None, "idempotency_key": key}
        checks[check["id"]] = check
        if key:
            by_key[key] = check
        task = asyncio.get_running_loop().create_task(answer_later(check))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JSONResponse(public(check), status_code=202)

    async def get_check(request: Request) -> Response:
        if (refused := outage()) is not None:
            return refused
        check = checks.get(request.path_params["check_id"])
        if check is None:
            return JSONResponse({"error": "no such check"}, status_code=404)
        answer = public(check)
        if check["status"] == "completed":
            answer.update(result=check["result"], next=check["next"], reason=check["reason"])
        return JSONResponse(answer)

    def public(check: dict[str, Any]) -> dict[str, Any]:
        return {"id": check["id"], "reference": check["reference"], "status": check["status"]}

    async def configure(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            for name in ("webhook_url", "webhook_secret", "delay_seconds",
                         "webhook_retry_seconds", "error_status"):
                if name in body:
                    numeric = name in ("delay_seconds", "webhook_retry_seconds")
                    config[name] = float(body[name]) if numeric and body[name] is not None \
                        else body[name]
            if config["error_status"] is not None:
                config["error_status"] = int(config["error_status"])
        return JSONResponse(config)

    async def list_checks(request: Request) -> Response:
        return JSONResponse({"data": list(checks.values())})

    async def send_verdict(request: Request) -> Response:
        """Test control: deliver a verdict for any check now (e.g. a late answer to a check
        that stayed silent); answers with the delivery attempts, receiver's answers included."""
        check = checks.get(request.path_params["check_id"])
        if check is None:
            return JSONResponse({"error": "no such check"}, status_code=404)
        body = await request.json()
        if body.get("result") not in ("GREEN", "RED"):
            return JSONResponse({"error": "result is GREEN or RED"}, status_code=400)
        verdict = (body["result"], body.get("next"), body.get("reason"))
        return JSONResponse({"attempts": await deliver(check, verdict)})

    async def list_deliveries(request: Request) -> Response:
        return JSONResponse({"attempts": deliveries})

    return Starlette(routes=[
        Route("/v1/checks", create_check, methods=["POST"]),
        Route("/v1/checks/{check_id}", get_check, methods=["GET"]),
        Route("/_sandbox/config", configure, methods=["GET", "POST"]),
        Route("/_sandbox/checks", list_checks, methods=["GET"]),
        Route("/_sandbox/checks/{check_id}/verdict", send_verdict, methods=["POST"]),
        Route("/_sandbox/webhooks", list_deliveries, methods=["GET"]),
        Route("/healthz", lambda request: JSONResponse({"ok": True}), methods=["GET"]),
    ])


def _json_or_none(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None
