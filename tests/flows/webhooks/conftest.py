"""Fixtures of the webhook end-to-end tests: the receiver sandbox on loopback, webhook settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine

from settlepay.config import Settings
from tests.support.webhooks import Receiver, api_client, running_receiver, webhook_settings


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def wh_settings(settings: Settings) -> Settings:
    return webhook_settings(settings)


@pytest_asyncio.fixture
async def api(wh_settings: Settings, engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(wh_settings, engine) as client:
        yield client
