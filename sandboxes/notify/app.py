"""The notification sandbox's ASGI app (Starlette): an in-memory outbox."""

from __future__ import annotations

import itertools
import threading
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app() -> Starlette:
    messages: list[dict] = []
    by_key: dict[str, dict] = {}
    lock = threading.Lock()
    ids = itertools.count(1)

    async def send(request: Request) -> Response:
        try:
            body = await request.json()
            to, subject, text = str(body["to"]), str(body.get("subject", "")), str(body["body"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send a JSON object with to, subject and body"},
                                status_code=400)
        key = request.headers.get("idempotency-key")
        with lock:
            if key and key in by_key:
                return JSONResponse(by_key[key], status_code=200)
            message = {"id": f"msg_{next(ids)}", "to": to, "subject": subject, "body": text,
                       "idempotency_key": key, "sent_at": time.time()}
            messages.append(message)
            if key:
                by_key[key] = message
        return JSONResponse(message, status_code=201)

    async def outbox(request: Request) -> Response:
        to = request.query_params.get("to")
        with lock:
            data = [m for m in messages if to is None or m["to"] == to]
        return JSONResponse({"data": data})

    async def reset(request: Request) -> Response:
        with lock:
            messages.clear()
            by_key.clear()
        return JSONResponse({"reset": True})

    return Starlette(routes=[
        Route("/v1/messages", send, methods=["POST"]),
        Route("/_sandbox/outbox", outbox, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/healthz", lambda request: JSONResponse({"ok": True}), methods=["GET"]),
    ])
