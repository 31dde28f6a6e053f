"""Notification provider adapter: send a message (the withdrawal one-time code) to a player.

    notifier = from_settings(settings)      # HttpNotifier at settings.notify_api_base
    notifier.send(to=..., subject=..., body=..., idempotency_key=...) -> message id

Every send carries the caller's idempotency key (`withdrawal-<id>:2fa-code`), so a retried
activity never sends a second message. Must never touch the database or log a message body
(it holds a one-time code).
"""

from __future__ import annotations

from typing import Protocol

import httpx

from settlepay.config import Settings


class NotifyUnavailable(Exception):
    """5xx, timeout or connection failure: retry with the same idempotency key."""


class NotifyRejected(Exception):
    """The provider refused the message (4xx): retrying cannot help."""


class Notifier(Protocol):
    """What the withdrawal activities need of a notification provider."""

    def send(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str: ...


class HttpNotifier:
    def __init__(self, *, base_url: str, timeout_seconds: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds

    def send(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str:
        try:
            response = httpx.post(f"{self._base_url}/v1/messages", timeout=self._timeout,
                                  headers={"Idempotency-Key": idempotency_key},
                                  json={"to": to, "subject": subject, "body": body})
        except httpx.HTTPError as error:
            raise NotifyUnavailable(f"notification provider unreachable: {error}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise NotifyUnavailable(f"notification provider answered {response.status_code}")
        if response.status_code >= 400:
            raise NotifyRejected(
                f"notification provider refused the message ({response.status_code})")
        return response.json()["id"]


def from_settings(settings: Settings) -> HttpNotifier:
    return HttpNotifier(base_url=settings.notify_api_base)
