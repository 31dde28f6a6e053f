"""OpenAPI links: which operation an answer's ids lead to (schemathesis follows them too).

    @router.post("", status_code=201, responses=links(201, retrieve=to("GET", "/v1/x/{x_id}",
                                                                      x_id="$response.body#/id")))
"""

from __future__ import annotations

from typing import Any


def to(method: str, path: str, *, request_body: dict[str, str] | None = None,
       **parameters: str) -> dict[str, Any]:
    """A link to `method path`, its parameters (and body fields) filled from the answer."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    link: dict[str, Any] = {"operationRef": f"#/paths/{pointer}/{method.lower()}"}
    if parameters:
        link["parameters"] = parameters
    if request_body:
        link["requestBody"] = request_body
    return link


def links(status: int, **named: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its `status` answer with these named links."""
    return {status: {"links": named}}
