"""Fixtures for the API tests: keys of each kind, the app on the session database, a client.

Partner ids carry a random suffix, so these tests never see rows of another test module.
Helpers (keys, bodies, problem assertions) are in tests/support/api.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from domain.scopes import Scope
from tests.support.api import Keys, make_key
from tests.support.net import free_port


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
