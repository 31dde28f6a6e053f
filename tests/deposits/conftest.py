"""The deposit stack for tests, every piece real and over real HTTP:

  Stripe sandbox (thread)  <-- adapter --  worker (Temporal dev server, this event loop)
        |  signed webhooks                       ^  start / signal
        v                                        |
  settlepay API (uvicorn thread, own Temporal client)  <-- httpx --  the test

Timings are short (webhook wait 1 s, polling 0.5 s) so that the fallbacks run within seconds.
Each test gets its own player (and partner key), so tests never read each other's rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.worker import Worker

import ledger
from activities.deposit import DepositActivities
from adapters.gateway.stripe_gateway import StripeGateway
from api.app import create_app
from commands.api_keys import create_api_key
from sandboxes.stripe import create_app as create_sandbox
from settlepay import task_queues
from settlepay.config import Settings
from settlepay.db import make_engine
from store import geolocation, players
from tests.support.databases import sqlalchemy_url
from tests.support.servers import serve_asgi
from workflows.deposit import DepositWorkflow

WEBHOOK_SECRET = "whsec_deposit_tests"
STRIPE_KEY = "sk_test_deposit_tests"


@dataclass
class Stack:
    settings: Settings
    api_url: str
    sandbox_url: str
    engine: Engine               # for the test's own reads
    client: Client               # the test's Temporal client
    worker_engine: Engine

    def gateway(self) -> StripeGateway:
        return StripeGateway(api_key=STRIPE_KEY, api_base=self.sandbox_url,
                             webhook_secret=WEBHOOK_SECRET, timeout_seconds=2.0)

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="deposit-test-act")
        worker = Worker(self.client, task_queue=task_queues.MAIN, workflows=[DepositWorkflow],
                        activities=DepositActivities(self.worker_engine, self.settings, self.gateway()).all(), activity_executor=executor,
                        max_concurrent_activities=8, graceful_shutdown_timeout=timedelta(seconds=2))
        try:
            async with worker:
                yield worker
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    # --- sandbox controls ------------------------------------------------------------------
    def faults(self, **settings) -> None:
        httpx.delete(f"{self.sandbox_url}/_sandbox/faults").raise_for_status()
        if settings:
            httpx.post(f"{self.sandbox_url}/_sandbox/faults", json=settings).raise_for_status()

    def payment_intents(self, deposit_id: str) -> list[dict]:
        return httpx.get(f"{self.sandbox_url}/_sandbox/payment_intents",
                         params={"key": "settlepay_deposit_id", "value": deposit_id}).json()["data"]

    def gateway_requests(self, path: str) -> list[dict]:
        return httpx.get(f"{self.sandbox_url}/_sandbox/requests", params={"path": path}).json()["data"]

    def webhook_attempts(self) -> list[dict]:
        return httpx.get(f"{self.sandbox_url}/_sandbox/webhooks").json()["attempts"]


@dataclass
class Player:
    id: str
    partner_id: str
    headers: dict[str, str]     # the partner's API key


@pytest.fixture(scope="session")
def stack(settings: Settings, database_url: str, engine: Engine, temporal_env) -> Iterator[Stack]:
    with serve_asgi(create_sandbox(webhook_url=None, webhook_secret=WEBHOOK_SECRET)) as sandbox_url:
        target = temporal_env.client.service_client.config.target_host
        stack_settings = settings.model_copy(update={
            "stripe_api_base": sandbox_url, "stripe_api_key": STRIPE_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET, "stripe_timeout_seconds": 2.0,
            "temporal_address": target, "temporal_namespace": temporal_env.client.namespace,
            "deposit_webhook_wait_seconds": 1.0, "deposit_poll_interval_seconds": 0.5,
            "deposit_timeout_seconds": 8.0,
        })
        api_engine = make_engine(sqlalchemy_url(database_url), pool_size=3, settings=stack_settings)
        worker_engine = make_engine(sqlalchemy_url(database_url), pool_size=2, settings=stack_settings)
        # The API gets its own Temporal client (made on its own event loop, in its thread).
        with serve_asgi(create_app(stack_settings, engine=api_engine)) as api_url:
            httpx.post(f"{sandbox_url}/_sandbox/config",
                       json={"webhook_url": f"{api_url}/v1/webhooks/stripe"}).raise_for_status()
            yield Stack(stack_settings, api_url, sandbox_url, engine, temporal_env.client, worker_engine)
        api_engine.dispose()
        worker_engine.dispose()


@pytest_asyncio.fixture
async def worker(stack: Stack) -> AsyncIterator[Worker]:
    stack.faults()
    async with stack.worker() as running:
        yield running
    stack.faults()


@pytest.fixture
def player(stack: Stack) -> Player:
    """A fresh partner (with its API key) and an active player located in New Jersey."""
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    player_id = f"ply_{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC)
    with stack.engine.begin() as conn:
        _, plaintext = create_api_key(conn, "partner", partner_id, None, "deposit tests")
        players.insert(conn, player_id=player_id, partner_id=partner_id, external_ref=None,
                       first_name="Grace", last_name="Hopper", email=None, date_of_birth=None,
                       jurisdiction="US-NJ")
        geolocation.insert(conn, geolocation.GeolocationCheck(
            id=geolocation.new_id(), player_id=player_id, checked_at=now, latitude=40.2206,
            longitude=-74.7597, ip_address="203.0.113.7", provider="test", jurisdiction="US-NJ",
            distance_to_border_miles=20.0, ip_country="US", ip_subdivision="NJ", anonymous_flags=(),
            allowed=True, code="allowed", reason="inside US-NJ", valid_until=now + timedelta(hours=1)))
    return Player(player_id, partner_id, {"Authorization": f"Bearer {plaintext}"})


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0, limits=limits) as client:
        yield client


# --- helpers the tests share --------------------------------------------------------------------

def deposit_body(player: Player, amount: int = 2_500, payment_method: str = "pm_card_visa",
                 currency: str = "USD") -> dict:
    return {"player_id": player.id, "amount": amount, "currency": currency, "payment_method": payment_method}


async def post_deposit(http: httpx.AsyncClient, player: Player, key: str | None = None,
                       **body) -> httpx.Response:
    headers = dict(player.headers)
    headers["Idempotency-Key"] = key or uuid.uuid4().hex
    return await http.post("/v1/deposits", json=deposit_body(player, **body), headers=headers)


async def wait_for_status(http: httpx.AsyncClient, player: Player, deposit_id: str,
                          statuses: tuple[str, ...] = ("succeeded", "failed"),
                          timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = await http.get(f"/v1/deposits/{deposit_id}", headers=player.headers)
        answer.raise_for_status()
        body = answer.json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"deposit {deposit_id} stuck in {body['status']}")
        await asyncio.sleep(0.05)


async def payment_state(stack: Stack, deposit_id: str, expected: str, timeout: float = 5.0) -> str | None:
    """The deposit workflow's PaymentState search attribute, once it is `expected` (or the last
    value seen): the workflow upserts it just after the activity that changed the row."""
    deadline = time.monotonic() + timeout
    while True:
        described = await stack.client.get_workflow_handle(f"deposit-{deposit_id}").describe()
        state = {k.name: v for k, v in described.typed_search_attributes}.get("PaymentState")
        if state == expected or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.05)


def cash(engine: Engine, player: Player, currency: str = "USD") -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, ledger.AccountRef.player_cash(player.id, currency)).posted


def ledger_credits(engine: Engine, deposit_id: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, idempotency_key, kind, result FROM ledger_transactions WHERE reference = :ref"),
            {"ref": deposit_id})]


def ledger_violations(engine: Engine) -> list[str]:
    from ledger import check
    with engine.connect() as conn:
        return check.run(conn)
