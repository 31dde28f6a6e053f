"""The provider adapters a worker process hands to its activities (Deps.providers).

One line per outside provider: its key in `Deps.providers`, the adapter module, and the
function in it that builds the adapter from Settings. A provider whose adapter module does not
exist yet is skipped (capabilities land one by one); an adapter that exists but fails to import
or to build is an error, never silently skipped. This module must not talk to the providers:
building an adapter opens no connection.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from settlepay.config import Settings

log = logging.getLogger(__name__)

# (key in Deps.providers, adapter module, factory name(s) tried in order: factory(settings) -> adapter)
PROVIDERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("gateway", "adapters.gateway", ("from_settings",)),
    ("kyc", "adapters.kyc", ("from_settings",)),
    ("geolocation", "adapters.geolocation", ("from_settings",)),
    ("notify", "adapters.notify", ("from_settings",)),
]


def _factory(module_name: str, names: tuple[str, ...]) -> Callable[[Settings], Any] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name in (module_name, module_name.rsplit(".", 1)[0]):
            return None  # the capability is not there yet
        raise  # the adapter exists but one of its own imports is missing: a real fault
    for name in names:
        factory = getattr(module, name, None)
        if callable(factory):
            return factory
    raise RuntimeError(f"{module_name} has none of the factory functions {', '.join(names)}")


def build_providers(settings: Settings) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    for key, module_name, names in PROVIDERS:
        factory = _factory(module_name, names)
        if factory is None:
            log.info("provider %s: %s not present, skipped", key, module_name)
            continue
        providers[key] = factory(settings)
    return providers
