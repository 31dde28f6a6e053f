"""Partner webhook test helpers: a clock that moves when told, the receiver sandbox over real
HTTP on loopback, settings with a shrunken schedule, endpoints and events, and verification of
recorded deliveries with the reference library (`standardwebhooks`).

    with running_receiver() as receiver:                 # sandboxes.webhook_receiver, loopback
        row, secret = make_endpoint(engine, settings, partner, receiver.hook("a"))
        emit(engine, partner)                             # one committed outbox event
        async with Dispatcher(engine, settings, clock=clock) as dispatcher:
            await dispatcher.drain()
        verify(secret, receiver.deliveries("a")[0])      # raises unless it verifies
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, RowMapping, text
from standardwebhooks.webhooks import Webhook

import outbox
from api.app import create_app
from commands import webhooks as commands
from sandboxes.webhook_receiver import create_app as create_receiver
from settlepay.config import Settings
from tests.support.net import free_port
from tests.support.servers import serve_asgi

SCHEDULE = [10.0, 20.0, 30.0]          # shrunken: 4 attempts in all


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


class Receiver:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def hook(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def configure(self, name: str, **config: Any) -> None:
        httpx.put(f"{self.base_url}/_sandbox/endpoints/{name}", json=config,
                  timeout=5).raise_for_status()

    def deliveries(self, name: str | None = None, webhook_id: str | None = None,
                   ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("name", name), ("webhook_id", webhook_id)) if v}
        return httpx.get(f"{self.base_url}/_sandbox/deliveries", params=params,
                         timeout=5).json()["data"]

    def release(self) -> None:
        httpx.post(f"{self.base_url}/_sandbox/release", timeout=5).raise_for_status()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    with serve_asgi(create_receiver()) as url:
        receiver = Receiver(url)
        try:
            yield receiver
        finally:
            receiver.release()


def webhook_settings(settings: Settings, **overrides: Any) -> Settings:
    """Settings for tests: loopback allowed, a 3-step schedule without jitter, short timeouts."""
    values = {"webhooks_allowed_networks": ["127.0.0.1/32"],
              "webhooks_retry_schedule_seconds": SCHEDULE, "webhooks_retry_jitter_ratio": 0.0,
              "webhooks_timeout_seconds": 5.0, "webhooks_poll_seconds": 0.02,
              "webhooks_dispatcher_concurrency": 16}
    values.update(overrides)
    return settings.model_copy(update=values)


def new_partner() -> str:
    return f"partner-{uuid.uuid4().hex[:10]}"


def make_endpoint(engine: Engine, settings: Settings, partner_id: str, url: str, *,
                  event_types: Sequence[str] = ("*",), rate_limit_per_minute: int | None = None,
                  now: datetime | None = None) -> tuple[RowMapping, str]:
    spec = commands.EndpointSpec(url=url, event_types=tuple(event_types),
                                 rate_limit_per_minute=rate_limit_per_minute)
    with engine.begin() as conn:
        return commands.create_endpoint(conn, settings, partner_id=partner_id, spec=spec,
                                        actor="test", operation_id=None,
                                        now=now or datetime.now(UTC))


def emit(engine: Engine, partner_id: str, event_type: str = "deposit.succeeded",
         payload: dict[str, Any] | None = None, *, player_id: str | None = None,
         with_partner: bool = True) -> int:
    """One committed domain event (what a command's outbox.emit leaves); its outbox id."""
    with engine.begin() as conn:
        return outbox.emit(conn, event_type=event_type, aggregate_type="test",
                           aggregate_id=uuid.uuid4().hex, payload=payload or {"n": 1},
                           player_id=player_id, partner_id=partner_id if with_partner else None)


def verify(secret: str, delivery: dict[str, Any]) -> dict[str, Any]:
    """The delivery's JSON body if its signature verifies with `secret` under the reference
    library (raises WebhookVerificationError otherwise)."""
    headers = {"webhook-id": delivery["webhook_id"],
               "webhook-timestamp": delivery["webhook_timestamp"],
               "webhook-signature": " ".join(delivery["signatures"])}
    return Webhook(secret).verify(delivery["body"].encode(), headers)


def verifies(secret: str, delivery: dict[str, Any], signature: str) -> bool:
    """Whether one signature of the delivery verifies with `secret` (reference library)."""
    headers = {"webhook-id": delivery["webhook_id"],
               "webhook-timestamp": delivery["webhook_timestamp"],
               "webhook-signature": signature}
    try:
        Webhook(secret).verify(delivery["body"].encode(), headers)
        return True
    except Exception:
        return False


def attempts_of(engine: Engine, endpoint_id: str) -> list[RowMapping]:
    with engine.connect() as conn:
        return list(conn.execute(text("""SELECT * FROM webhook_attempts WHERE endpoint_id = :e
                                          ORDER BY id"""), {"e": endpoint_id}).mappings())


def endpoint_row(engine: Engine, endpoint_id: str) -> RowMapping:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM webhook_endpoints WHERE id = :e"),
                            {"e": endpoint_id}).mappings().one()


def partner_events(engine: Engine, partner_id: str) -> list[RowMapping]:
    with engine.connect() as conn:
        return list(conn.execute(text("""SELECT * FROM webhook_events WHERE partner_id = :p
                                          ORDER BY seq"""), {"p": partner_id}).mappings())


def body_of(delivery: dict[str, Any]) -> dict[str, Any]:
    return json.loads(delivery["body"])


@asynccontextmanager
async def api_client(settings: Settings, engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in process (no Temporal: webhook routes do not need it)."""
    app = create_app(settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}"}), engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client
