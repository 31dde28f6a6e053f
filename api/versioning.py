"""The API version, sent in a request header the way Stripe's `Stripe-Version` is.

    Settlepay-Version: 2026-12-01

The policy
----------
* A version is a date. `VERSIONS` lists those the API serves, oldest first; the newest is the
  current one. Every answer says which version it was made under, in `Settlepay-Version`.
* A request without the header is served under the current version. Integrations should send
  the header on every request, so that they keep their behaviour when a new version appears.
* A request naming a version that is not served gets 400 problem+json `api_version_unknown`
  (its `supported` member lists the served versions); nothing runs.
* Backwards-compatible changes come without a new version: new resources and routes, new
  optional request parameters, new members in responses, new values of `status`-like strings
  documented as open, new event types, new problem codes, new response headers. Clients must
  ignore what they do not know.
* Anything else (removing or renaming a member, changing a type or a meaning, a new required
  parameter, a different status code for the same case) is released under a new dated
  version; the older versions keep their behaviour and stay served for at least 12 months after
  their successor appears, announced in the changelog. A route that answers differently per
  version reads `request.scope[VERSION_SCOPE_KEY]` (always one of VERSIONS).
Must never: serve a request under a version it did not ask for when it named one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem

HEADER = "Settlepay-Version"
VERSIONS: tuple[str, ...] = ("2026-12-01",)
CURRENT = VERSIONS[-1]
VERSION_SCOPE_KEY = "settlepay.api_version"


def unknown_version() -> Problem:
    # The version asked for is not repeated: a response never echoes what was submitted.
    return Problem(400, "api_version_unknown", "Unknown API version",
                   f"This {HEADER} is not served; send one of {', '.join(VERSIONS)} "
                   "(or no header for the current one).",
                   extensions={"supported": list(VERSIONS)}, headers={HEADER: CURRENT})


class ApiVersion:
    """Pure ASGI: pick the request's version (or refuse it) and name it in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        asked = next((value.decode("latin-1").strip() for name, value in scope["headers"]
                      if name.lower() == HEADER.lower().encode()), None)
        version = CURRENT if asked is None else asked
        if version not in VERSIONS:
            return await unknown_version().response()(scope, receive, send)
        header = (HEADER.lower().encode(), version.encode())
        scope[VERSION_SCOPE_KEY] = version

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, named)
