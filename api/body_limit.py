"""Refuse a request body larger than `Settings.api_max_body_bytes` with 413 problem+json.

`BodySizeLimit` (api/app.py, the outermost of the API's own middlewares) answers at once when
`Content-Length` is over the limit, without reading the body; otherwise it reads the body as it
comes (chunked uploads included) and answers 413 as soon as the bytes read pass the limit. A
body within the limit goes on unchanged to everything inside, which reads it from memory.
Nothing inside runs for a refused request: no key is authenticated or rate limited, no
Idempotency-Key claimed, no route called.
Must never: echo the body, or read more of it than the limit (plus one chunk).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem

DEFAULT_MAX_BYTES = 1_048_576


def too_large(limit: int) -> Problem:
    return Problem(413, "payload_too_large", "Request body too large",
                   f"Request bodies are limited to {limit} bytes.")


class BodySizeLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
        limit = getattr(settings, "api_max_body_bytes", DEFAULT_MAX_BYTES)
        declared = next((value for name, value in scope["headers"]
                         if name.lower() == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await too_large(limit).response()(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await too_large(limit).response()(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
