"""bench/deposits.py's raw HTTP client for the deposit loop: the API's answer as sent, one
connection reused, a broken connection's request sent again on a new one."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.deposits import RawHttp
from tests.support.servers import serve_asgi


def _app(seen: list[tuple[str, str, dict]]) -> Starlette:
    async def deposits(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append((request.headers["idempotency-key"], f"{request.client.port}", body))
        return JSONResponse({"id": f"dep_{len(seen)}", "echo": body}, status_code=202)

    return Starlette(routes=[Route("/v1/deposits", deposits, methods=["POST"])])


def test_answers_as_sent_over_one_kept_connection():
    seen: list[tuple[str, str, dict]] = []
    with serve_asgi(_app(seen)) as url:
        async def two() -> list:
            raw = RawHttp(url)
            answers = [await raw.post("/v1/deposits", headers={"Idempotency-Key": f"k{i}"},
                                      json={"amount": i}) for i in (1, 2)]
            raw.close()
            return answers
        first, second = asyncio.run(two())
    assert (first.status_code, first.json()) == (202, {"id": "dep_1", "echo": {"amount": 1}})
    assert second.json()["id"] == "dep_2" and '"amount":2' in second.text
    assert [key for key, _, _ in seen] == ["k1", "k2"]
    assert seen[0][1] == seen[1][1]   # the same client port: one connection


def test_a_broken_kept_connection_is_replaced_and_the_request_sent_again():
    seen: list[tuple[str, str, dict]] = []
    with serve_asgi(_app(seen)) as url:
        async def broken() -> object:
            raw = RawHttp(url)
            await raw.post("/v1/deposits", headers={"Idempotency-Key": "a"}, json={})
            for _, writer, _ in raw.idle:
                writer.transport.abort()   # the kept connection breaks under it
            answer = await raw.post("/v1/deposits", headers={"Idempotency-Key": "b"}, json={})
            raw.close()
            return answer
        answer = asyncio.run(broken())
    assert answer.status_code == 202 and [key for key, _, _ in seen] == ["a", "b"]
