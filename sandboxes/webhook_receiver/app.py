"""The webhook receiver sandbox's ASGI app (Starlette): deliveries in memory, answers injected."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KEPT_MAX = 200_000          # deliveries kept in memory (oldest dropped first)
ANSWER_FIELDS = ("status", "latency_seconds", "headers", "body")


def _verify(secrets: list[str], body: bytes, headers: dict[str, str]) -> list[int]:
    """Indexes of the registered secrets the delivery's signature header verifies with."""
    good = []
    for index, secret in enumerate(secrets):
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
            good.append(index)
        except WebhookVerificationError:
            pass
    return good


def create_app() -> Starlette:
    endpoints: dict[str, dict[str, Any]] = {}
    deliveries: deque[dict[str, Any]] = deque(maxlen=KEPT_MAX)
    lock = threading.Lock()
    seq = itertools.count(1)
    releases: list[asyncio.Event] = []

    def config_of(name: str) -> dict[str, Any]:
        return endpoints.setdefault(name, {"secrets": [], "status": 200, "latency_seconds": 0.0,
                                           "headers": {}, "body": "ok", "script": []})

    def answer_for(config: dict[str, Any]) -> dict[str, Any]:
        answer = {field: config[field] for field in ANSWER_FIELDS}
        if config["script"]:
            answer.update(config["script"].pop(0))
        return answer

    async def receive(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        headers = {k: v for k, v in request.headers.items()}
        with lock:
            config = config_of(name)
            secrets = list(config["secrets"])
            answer = answer_for(config)
        good = _verify(secrets, body, headers) if secrets else []
        record: dict[str, Any] = {
            "seq": next(seq), "name": name, "received_at": time.time(),
            "webhook_id": headers.get("webhook-id"),
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "signatures": (headers.get("webhook-signature") or "").split(),
            "host": headers.get("host"), "body": body.decode("utf-8", errors="replace"),
            "verified": bool(good) if secrets else None, "verified_secrets": good,
            "answered": None,
        }
        with lock:
            deliveries.append(record)
        latency = float(answer.get("latency_seconds") or 0.0)
        if latency > 0:
            release = asyncio.Event()
            releases.append(release)
            try:
                await asyncio.wait_for(release.wait(), timeout=latency)
            except TimeoutError:
                pass
            finally:
                releases.remove(release)
        record["answered"] = int(answer["status"])
        record["answered_at"] = time.time()
        return Response(str(answer.get("body") or ""), status_code=int(answer["status"]),
                        headers={str(k): str(v) for k, v in (answer.get("headers") or {}).items()})

    async def configure(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            changes = await request.json()
            assert isinstance(changes, dict)
        except (ValueError, AssertionError):
            return JSONResponse({"error": "send a JSON object"}, status_code=400)
        with lock:
            config = config_of(name)
            for key in ("secrets", "status", "latency_seconds", "headers", "body", "script"):
                if key in changes:
                    config[key] = list(changes[key]) if key in ("secrets", "script") \
                        else changes[key]
            shown = dict(config)
        return JSONResponse(shown)

    async def listing(request: Request) -> Response:
        name = request.query_params.get("name")
        webhook_id = request.query_params.get("webhook_id")
        with lock:
            data = [d for d in deliveries if (name is None or d["name"] == name)
                    and (webhook_id is None or d["webhook_id"] == webhook_id)]
        return JSONResponse({"data": data})

    async def stats(request: Request) -> Response:
        name = request.query_params.get("name")
        with lock:
            data = [d for d in deliveries if name is None or d["name"] == name]
        return JSONResponse({"received": len(data),
                             "distinct": len({d["webhook_id"] for d in data}),
                             "verified": sum(1 for d in data if d["verified"])})

    async def release(request: Request) -> Response:
        for event in list(releases):
            event.set()
        return JSONResponse({"released": True})

    async def reset(request: Request) -> Response:
        with lock:
            endpoints.clear()
            deliveries.clear()
        for event in list(releases):
            event.set()
        return JSONResponse({"reset": True})

    return Starlette(routes=[
        Route("/hooks/{name}", receive, methods=["POST"]),
        Route("/_sandbox/endpoints/{name}", configure, methods=["PUT"]),
        Route("/_sandbox/deliveries", listing, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/release", release, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/healthz", lambda request: JSONResponse({"ok": True}), methods=["GET"]),
    ])
