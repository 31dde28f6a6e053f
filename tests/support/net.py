"""Free ports and small network helpers for tests (so they run beside a `make dev` stack)."""

from __future__ import annotations

import time

import httpx

from settlepay.ports import free_port

__all__ = ["free_port", "wait_http"]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
