"""The API version, sent in a request header the way Stripe's `Stripe-Version` is.

    Settlepay-Version: 2026-12-01

The policy
----------
* A version is a date. `domain.api_versions.VERSIONS` lists those the API serves, oldest
  first; the newest is the current one. Every answer says which version it was made under, in
  `Settlepay-Version`.
* Every API key is pinned to a version: the current one when it is made, or the one its
  create request asks for (`api_version`); a rolled key keeps its predecessor's unless the roll
  asks for another. A request without the header is served under its key's pinned version (no
  key: the current one). A request with the header is served under that version, for that
  request only: that is how a partner tries a new version before moving its key to it.
* A request naming a version that is not served gets 400 problem+json `api_version_unknown`
  (its `supported` member lists the served versions); nothing runs.
* Backwards-compatible changes come without a new version: new resources and routes, new
  optional request parameters, new members in responses, new values of `status`-like strings
  documented as open, new event types, new problem codes, new response headers. Clients must
  ignore what they do not know.
* Anything else (removing or renaming a member, changing a type or a meaning, a new required
  parameter, a different status code for the same case) is released under a new dated
  version; the older versions keep their behaviour and stay served for at least 12 months after
  their successor appears, announced in the changelog. A key pinned to a version that is no
  longer served is served under the oldest version after it (domain.api_versions.for_pin).
  A route that answers differently per version reads `request.scope[VERSION_SCOPE_KEY]`
  (always a served version).
* Upgrading: send the new version's header on some requests (or on a test key's), then roll
  the key with `{"api_version": "<new>"}` (POST /v1/api_keys/{id}/roll): the new key is pinned
  to it while the old one keeps its version until it expires. Going back is rolling again.
Must never: serve a request under a version it did not ask for when it named one.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem
from domain import api_versions

HEADER = "Settlepay-Version"
# The served versions at import (read domain.api_versions for the live list).
VERSIONS: tuple[str, ...] = api_versions.VERSIONS
CURRENT = api_versions.current()
VERSION_SCOPE_KEY = "settlepay.api_version"
# The version the request's header named (None: no header), set before the key is known.
ASKED_SCOPE_KEY = "settlepay.api_version_asked"
# The request being served (its scope): request bodies validated while it runs read its
# version here (served_version), once authentication has settled it.
_REQUEST: ContextVar[dict[str, Any] | None] = ContextVar("settlepay_api_request", default=None)


def served_version() -> str:
    """The version the request being served is served under (outside a request: the
    current one). Request bodies are validated after authentication, so the key's pin counts."""
    scope = _REQUEST.get()
    return scope[VERSION_SCOPE_KEY] if scope is not None else api_versions.current()


def unknown_version() -> Problem:
    # The version asked for is not repeated: a response never echoes what was submitted.
    served = api_versions.VERSIONS
    return Problem(400, "api_version_unknown", "Unknown API version",
                   f"This {HEADER} is not served; send one of {', '.join(served)} "
                   "(or no header for your API key's pinned version).",
                   extensions={"supported": list(served)},
                   headers={HEADER: api_versions.current()})


def settle(scope: dict[str, Any], pinned: str | None) -> None:
    """Once the request's key is known: without a header, serve it under the key's pinned
    version (`pinned`; None: the key's pin was not read, nothing changes)."""
    if pinned is not None and scope.get(ASKED_SCOPE_KEY) is None:
        scope[VERSION_SCOPE_KEY] = api_versions.for_pin(pinned)


class ApiVersion:
    """Pure ASGI: refuse an unknown version, and name the version used in the answer (the
    header's, else the key's pinned one once authentication has read it, else the current)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        asked = next((value.decode("latin-1").strip() for name, value in scope["headers"]
                      if name.lower() == HEADER.lower().encode()), None)
        if asked is not None and not api_versions.served(asked):
            return await unknown_version().response()(scope, receive, send)
        scope[ASKED_SCOPE_KEY] = asked
        scope[VERSION_SCOPE_KEY] = asked if asked is not None else api_versions.current()
        token = _REQUEST.set(scope)

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = (HEADER.lower().encode(), scope[VERSION_SCOPE_KEY].encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, named)
        finally:
            _REQUEST.reset(token)
