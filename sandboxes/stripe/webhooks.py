"""Webhook delivery: signed POSTs to the configured endpoint, with Stripe's retry habit and the
faults a test asks for (delay, duplicates, reordering, events never sent).

Runs on the sandbox's event loop; every delivery attempt is logged for tests to inspect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from sandboxes.stripe.faults import RNG, Faults
from sandboxes.stripe.signing import signature_header


class WebhookDispatcher:
    def __init__(self, faults: Faults, *, url: str | None, secret: str, max_attempts: int = 6,
                 retry_base_seconds: float = 0.2,
                 enabled_events: list[str] | None = None) -> None:
        self.faults = faults
        self.url = url
        # Like a Stripe webhook endpoint's `enabled_events`: "*" or exact event types.
        self.enabled_events = list(enabled_events or ["*"])
        self.secret = secret
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.log: list[dict[str, Any]] = []        # one row per attempt
        self.withheld: list[dict[str, Any]] = []   # dropped by fault injection, releasable
        self._reorder_buffer: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task] = set()
        self._client: httpx.AsyncClient | None = None

    def submit(self, event: dict[str, Any]) -> None:
        """Decide this event's fate (faults are read now) and schedule its delivery."""
        if "*" not in self.enabled_events and event["type"] not in self.enabled_events:
            return
        f = self.faults
        if f.webhook_drop_rate > 0 and RNG.random() < f.webhook_drop_rate:
            self.withheld.append(event)
            return
        duplicate = f.webhook_duplicate_rate > 0 and RNG.random() < f.webhook_duplicate_rate
        copies = 2 if duplicate else 1
        delay = f.webhook_delay_ms / 1000
        for _ in range(copies):
            if f.webhook_reorder_window_ms > 0:
                if not self._reorder_buffer:
                    self._spawn(self._flush_reordered(delay + f.webhook_reorder_window_ms / 1000))
                self._reorder_buffer.append(event)
            else:
                self._spawn(self._deliver(event, delay))

    def release_withheld(self) -> int:
        events, self.withheld = self.withheld, []
        for event in events:
            self._spawn(self._deliver(event, 0))
        return len(events)

    def resend(self, event: dict[str, Any]) -> None:
        self._spawn(self._deliver(event, 0))

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is being delivered (for tests)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()

    # --- internals -----------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_reordered(self, after: float) -> None:
        await asyncio.sleep(after)
        events, self._reorder_buffer = self._reorder_buffer, []
        for event in reversed(events):
            await self._deliver(event, 0)

    async def _deliver(self, event: dict[str, Any], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if not self.url:
            self.log.append({"event": event["id"], "type": event["type"], "attempt": 0,
                             "status": None, "error": "no webhook endpoint configured",
                             "at": time.time()})
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        payload = json.dumps(event, separators=(",", ":"))
        for attempt in range(1, self.max_attempts + 1):
            status, error = None, None
            try:
                response = await self._client.post(
                    self.url, content=payload.encode("utf-8"),
                    headers={"Content-Type": "application/json; charset=utf-8",
                             "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                             "Stripe-Signature": signature_header(payload, self.secret)})
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.log.append({"event": event["id"], "type": event["type"], "attempt": attempt,
                             "status": status, "error": error, "at": time.time()})
            if status is not None and 200 <= status < 300:
                return
            await asyncio.sleep(self.retry_base_seconds * 2 ** (attempt - 1))
