"""What activities need from the outside world, built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from settlepay.config import Settings


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    # Provider adapters, filled in by workers/main.py (tests pass their own pointing at sandboxes).
    providers: dict[str, Any] = field(default_factory=dict)
