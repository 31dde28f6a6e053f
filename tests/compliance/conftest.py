"""Fixtures for the compliance gates: bare players, settings reading test MaxMind DBs.

Constants and helpers are in tests/support/compliance.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.compliance import geo_settings_for, insert_player, write_test_mmdbs


@pytest.fixture
def make_player(engine):
    return lambda jurisdiction="US-NJ": insert_player(engine, jurisdiction)


@pytest.fixture(scope="session")
def mmdb_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_test_mmdbs(tmp_path_factory.mktemp("mmdb"))


@pytest.fixture(scope="session")
def geo_settings(settings, mmdb_files):
    return geo_settings_for(settings, *mmdb_files)
