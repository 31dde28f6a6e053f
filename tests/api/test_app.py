"""The app on its own: it makes its engine and Temporal client at start, runs without
Temporal, and `python -m api` serves it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from api.app import create_app
from api.deps import TemporalDep
from tests.support.api import assert_problem, player_body
from tests.support.net import free_port, wait_http
from tests.support.servers import serve_asgi

ROOT = Path(__file__).resolve().parents[2]


def _with_temporal_probe(app):
    @app.get("/v1/test-temporal")
    async def probe(client: TemporalDep) -> dict:
        return {"namespace": client.namespace}
    return app


async def test_app_makes_its_engine_and_runs_without_temporal(api_settings, keys):
    app = _with_temporal_probe(create_app(api_settings))
    with serve_asgi(app) as base_url:
        assert app.state.engine is not None
        async with httpx.AsyncClient(base_url=base_url) as http:
            made = await http.post("/v1/players", json=player_body(),
                                   headers=keys.partner_a.headers)
            assert made.status_code == 201
            seen = await http.get(f"/v1/players/{made.json()['id']}",
                                  headers=keys.partner_a.headers)
            assert seen.json()["id"] == made.json()["id"]
            assert_problem(await http.get("/v1/test-temporal"), 503, "temporal_unavailable")
            assert_problem(await http.get("/readyz"), 503, "not_ready")
    assert app.state.engine is None   # its own engine is disposed at shutdown


async def test_app_connects_to_temporal_itself(api_settings, temporal_env):
    target = temporal_env.client.service_client.config.target_host
    settings = api_settings.model_copy(update={"temporal_address": target})
    app = _with_temporal_probe(create_app(settings))
    with serve_asgi(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            probed = await http.get("/v1/test-temporal")
            assert probed.json() == {"namespace": settings.temporal_namespace}


def test_python_m_api_serves(database_url):
    port = free_port()
    env = dict(os.environ, SETTLEPAY_DATABASE_URL=database_url, SETTLEPAY_API_PORT=str(port),
               SETTLEPAY_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", SETTLEPAY_LOG_LEVEL="warning",
               PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        assert_problem(httpx.get(f"http://127.0.0.1:{port}/v1/players/ply_x"), 401,
                       "api_key_missing")
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
        assert process.wait(timeout=15) in (0, -15)
