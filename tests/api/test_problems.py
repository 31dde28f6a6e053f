"""Errors are problem+json everywhere; probes; the OpenAPI document."""

from __future__ import annotations

import httpx

from api.app import create_app
from settlepay.db import make_engine
from tests.support.api import assert_problem
from tests.support.net import free_port


async def test_malformed_json_is_400(client, keys):
    response = await client.post("/v1/players", content=b'{"first_name": ',
                                 headers=keys.partner_a.headers
                                 | {"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_json")


async def test_unknown_path_and_wrong_method_are_problems(client, keys):
    assert_problem(await client.get("/v1/nothing-here", headers=keys.operator.headers), 404,
                   "not_found")
    assert_problem(await client.delete("/v1/players", headers=keys.operator.headers), 405,
                   "method_not_allowed")


async def test_unexpected_exception_is_a_bare_500(api_settings, engine, keys):
    app = create_app(api_settings, engine=engine)

    @app.get("/v1/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        response = await http.get("/v1/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert set(body) == {"type", "title", "status", "code", "detail"}


async def test_healthz_and_docs(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/players", "/v1/players/{player_id}", "/healthz", "/readyz"} <= set(spec["paths"])
    unauthorized = spec["paths"]["/v1/players"]["post"]["responses"]["401"]
    assert "application/problem+json" in unauthorized["content"]


async def test_readyz_is_503_without_temporal(client):
    response = await client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["temporal"] != "ok"


async def test_readyz_is_503_without_database(api_settings, temporal_env):
    dead = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none", pool_size=1)
    app = create_app(api_settings, engine=dead, temporal_client=temporal_env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        response = await http.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["checks"]["temporal"] == "ok" and body["checks"]["database"] != "ok"
    dead.dispose()


async def test_readyz_is_200_with_database_and_temporal(api_settings, engine, temporal_env):
    app = create_app(api_settings, engine=engine, temporal_client=temporal_env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}
