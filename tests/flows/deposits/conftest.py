"""The deposit flows run on the shared stack (tests/support/stack.py); each test gets its own
partner and player, active and located in New Jersey (tests/support/factories.py)."""

from __future__ import annotations

import pytest

from tests.support.factories import Player, make_player
from tests.support.stack import Stack


@pytest.fixture
def player(stack: Stack) -> Player:
    return make_player(stack.engine, purpose="deposit tests")
