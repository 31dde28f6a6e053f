"""API test helpers: API keys of each kind, a player body, and the problem+json assertion.

    key = make_key(engine, "partner", "partner-a")          # Key(id, plaintext, partner_id)
    await client.post("/v1/players", json=player_body(), headers=key.headers)
    assert_problem(response, 404, "player_not_found")
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from api.app import create_app
from commands.api_keys import create_api_key
from settlepay.config import Settings
from tests.support.compliance import geo_settings_for, write_test_mmdbs
from tests.support.net import free_port


@dataclass(frozen=True)
class Key:
    id: str
    plaintext: str
    partner_id: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plaintext}"}


@dataclass(frozen=True)
class Keys:
    partner_a: Key
    partner_b: Key
    operator: Key
    read_only: Key          # partner A, players:read only


def make_key(engine: Engine, role: str, partner_id: str | None,
             scopes: Iterable[str] | None = None, name: str = "test") -> Key:
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, role, partner_id, scopes, name)
    return Key(key_id, plaintext, partner_id)


def player_body(**overrides: Any) -> dict[str, Any]:
    body = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "date_of_birth": "1990-12-10", "jurisdiction": "US-NJ",
            "external_ref": f"ext-{uuid.uuid4().hex[:12]}"}
    body.update(overrides)
    return body


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith(code) and body["title"]
    return body


@asynccontextmanager
async def geo_client(settings: Settings, engine: Engine,
                     folder: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app (without Temporal) reading the test MaxMind databases written to
    `folder`, so the addresses in tests/support/compliance.py have their meanings."""
    geo_settings = geo_settings_for(settings, *write_test_mmdbs(folder))
    app = create_app(geo_settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}"}), engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http
