"""Throw-away PostgreSQL databases for tests: created, migrated, dropped.

Uses the server at SETTLEPAY_TEST_ADMIN_URL (default: the local one at 127.0.0.1:5432); where
none answers, starts an embedded server (pgserver) in a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg

from settlepay import migrate

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@lru_cache
def admin_url() -> str:
    url = os.environ.get("SETTLEPAY_TEST_ADMIN_URL", DEFAULT_ADMIN_URL)
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return url
    except psycopg.OperationalError:
        import pgserver  # embedded server for machines without PostgreSQL

        server = pgserver.get_server(tempfile.mkdtemp(prefix="settlepay-pg-"),
                                     cleanup_mode="delete")
        return server.get_uri()


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


@contextmanager
def temporary_database(prefix: str = "sp_test", revision: str = "head") -> Iterator[str]:
    """A new database migrated up to `revision`; yields its psycopg URL and drops it
    afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_url(), name)
    try:
        migrate.upgrade(sqlalchemy_url(url), revision)
        yield url
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def down_then_up(url: str, before: str, after: str) -> Iterator[str]:
    """Take the database at `url` (migrated to `after`) down to `before`, then up to `after`
    again, yielding each revision once the database is at it: a migration's downgrade and
    upgrade checked in one loop."""
    from alembic import command

    engine_url = sqlalchemy_url(url)
    command.downgrade(migrate.alembic_config(engine_url), before)
    yield before
    migrate.upgrade(engine_url, after)
    yield after
