"""Refuse the NUL character (U+0000) in a request's path, query or JSON body, for every route.

PostgreSQL cannot store U+0000 in text (nor in jsonb strings): a value carrying one reaches
the database and fails there with a 500, whatever the route. `NulByteGuard` (installed by
api/app.py as the outermost of our middlewares) answers such a request with a 422
`validation_error` before anything else looks at it: no route runs, no Idempotency-Key is
claimed, nothing is written. It looks at

* the path (`/v1/players/%00x`: path parameters are decoded by then),
* the query string (`?q=%00`, decoded as a parameter value would be),
* a JSON body: every string, object key included, at any depth (`"\\u0000"` in the text).

A body is only parsed here when its raw bytes could hold a NUL at all (a `\\u0000` escape or a
raw zero byte), so ordinary requests pay one substring search. A body that is not valid JSON
goes on untouched: the route's own parsing answers it (400 `malformed_json`).

This module must never echo a submitted value in its answer (only where the NUL was), and never
change a request it lets through.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem

NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})   # their bodies are never read


def _nul_in_json(value: Any, loc: list[str]) -> list[str] | None:
    """Where the first string (or object key) containing NUL sits in a parsed JSON value."""
    if isinstance(value, str):
        return loc if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return [*loc, key.replace(NUL, "\\u0000")]
            found = _nul_in_json(item, [*loc, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in_json(item, [*loc, str(index)])
            if found is not None:
                return found
    return None


def nul_location(path: str, query: bytes, body: bytes) -> list[str] | None:
    """The location (as in a validation error's `loc`) of the first NUL, or None."""
    if NUL in path:
        return ["path"]
    if b"\x00" in query or b"%00" in query:
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if b"\x00" in unquote_to_bytes(value):
                return ["query", unquote_to_bytes(name).decode("utf-8", "replace")
                        .replace(NUL, "\\u0000")]
            if b"\x00" in unquote_to_bytes(name):
                return ["query"]
    if _ESCAPED_NUL in body or b"\x00" in body:
        try:
            document = json.loads(body)
        except ValueError:   # not JSON (or not UTF-8/16/32): the route answers it
            return None
        return _nul_in_json(document, ["body"])
    return None


def nul_problem(loc: list[str]) -> Problem:
    return Problem(422, "validation_error", "The request is not valid",
                   "Text may not contain the NUL character (U+0000, `\\u0000`); see `errors` "
                   "for where it was found.",
                   errors=[{"loc": loc, "message": "the NUL character (U+0000) is not allowed",
                            "type": "nul_character"}])


class NulByteGuard:
    """Pure ASGI middleware: reads the body once and hands its messages on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, query = scope.get("path", ""), scope.get("query_string", b"")
        messages = [] if scope["method"] in _NO_BODY else await _read_body(receive)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        loc = nul_location(path, query, body)
        if loc is not None:
            return await nul_problem(loc).response()(scope, receive, send)
        return await self.app(scope, _replaying(messages, receive), send)


async def _read_body(receive: Receive) -> list[Message]:
    """The body's messages as they came, up to the last chunk (or the client's disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """The app receives the messages already read here, in order, then the real channel."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
