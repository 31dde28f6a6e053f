"""Fixtures of the webhook end-to-end tests: the receiver sandbox on loopback, webhook settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from settlepay.config import Settings
from tests.support.webhooks import Receiver, running_receiver, webhook_settings


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def wh_settings(settings: Settings) -> Settings:
    return webhook_settings(settings)
