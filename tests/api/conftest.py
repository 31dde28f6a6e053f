"""Fixtures for the API tests: keys of each kind, the app on the session database, a client.

Partner ids carry a random suffix, so these tests never see rows of another test module.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.scopes import Scope
from store.api_keys import create_api_key
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


def make_key(engine, role: str, partner_id: str | None, scopes=None, name: str = "test") -> Key:
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, role, partner_id, scopes, name)
    return Key(key_id, plaintext, partner_id)


@pytest.fixture(scope="session")
def keys(engine) -> Keys:
    suffix = uuid.uuid4().hex[:8]
    a, b = f"partner-a-{suffix}", f"partner-b-{suffix}"
    return Keys(
        partner_a=make_key(engine, "partner", a, name="partner A"),
        partner_b=make_key(engine, "partner", b, name="partner B"),
        operator=make_key(engine, "operator", None, name="operator"),
        read_only=make_key(engine, "partner", a, [Scope.PLAYERS_READ], name="partner A read-only"),
    )


@pytest.fixture(scope="session")
def api_settings(settings):
    # Nothing listens on this port: the app must run (and say so in /readyz) without Temporal.
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


@pytest.fixture
def app(api_settings, engine):
    return create_app(api_settings, engine=engine)


@pytest_asyncio.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def player_body(**overrides) -> dict:
    body = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "date_of_birth": "1990-12-10", "jurisdiction": "US-NJ",
            "external_ref": f"ext-{uuid.uuid4().hex[:12]}"}
    body.update(overrides)
    return body


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith(code) and body["title"]
    return body
