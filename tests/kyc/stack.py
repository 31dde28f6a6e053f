"""The KYC + withdrawal stack for tests, every piece real and over real HTTP:

  KYC sandbox ---- signed webhook ----> settlepay API (uvicorn thread) --> Temporal dev server
  notify sandbox <-- one-time codes --  worker (this event loop): KYC + withdrawal workflows
  Stripe sandbox <-- refunds/payouts -/

Imported by tests/kyc/conftest.py and tests/withdrawals/conftest.py. Each test makes its own
partner, player and API keys, so tests never read each other's rows.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.worker import Worker

import ledger
from adapters.gateway.stripe_gateway import StripeGateway
from adapters.kyc import HttpKycProvider
from adapters.notify import HttpNotifier
from api.app import create_app
from ledger import AccountRef, Leg, Transfer
from sandboxes.kyc import create_app as create_kyc_sandbox
from sandboxes.notify import create_app as create_notify_sandbox
from sandboxes.stripe import create_app as create_stripe_sandbox
from settlepay import task_queues
from settlepay.config import Settings
from settlepay.db import make_engine
from store import geolocation, kyc, players
from store import deposits as deposit_store
from commands.api_keys import create_api_key
from tests.support.databases import sqlalchemy_url
from tests.support.servers import serve_asgi
from workers import wiring
from workers.providers import Providers

KYC_SECRET = "whsec_" + "a3ljdGVzdHNlY3JldGZvcnRoZXN0YWNr"   # base64 of a test secret
STRIPE_SECRET = "whsec_kyc_withdrawal_tests"
STRIPE_KEY = "sk_test_kyc_withdrawal_tests"
APPROVAL_THRESHOLD = 50_000


@dataclass
class Stack:
    settings: Settings
    api_url: str
    kyc_url: str
    notify_url: str
    stripe_url: str
    engine: Engine
    worker_engine: Engine
    client: Client                        # the dev server's client (the test's own)

    def providers(self) -> Providers:
        gateway = StripeGateway(api_key=STRIPE_KEY, api_base=self.stripe_url,
                                webhook_secret=STRIPE_SECRET, timeout_seconds=2.0)
        return Providers(gateway=gateway,
                         kyc=HttpKycProvider(base_url=self.kyc_url, timeout_seconds=2.0),
                         notifier=HttpNotifier(base_url=self.notify_url, timeout_seconds=2.0))

    @asynccontextmanager
    async def worker(self, client: Client | None = None) -> AsyncIterator[Worker]:
        executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="kyc-wd-test-act")
        worker = Worker(client or self.client, task_queue=task_queues.MAIN,
                        workflows=wiring.main_queue(self.worker_engine, self.settings, self.providers())[0],
                        activities=wiring.main_queue(self.worker_engine, self.settings, self.providers())[1],
                        activity_executor=executor, max_concurrent_activities=6,
                        graceful_shutdown_timeout=timedelta(seconds=2))
        try:
            async with worker:
                yield worker
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def outbox(self, to: str) -> list[dict]:
        return httpx.get(f"{self.notify_url}/_sandbox/outbox", params={"to": to}).json()["data"]


@dataclass
class Player:
    id: str
    partner_id: str
    email: str
    headers: dict[str, str]               # the partner's API key
    operator: dict[str, str]              # an operator key (reviews)


@pytest.fixture(scope="session")
def stack(settings: Settings, database_url: str, engine: Engine, temporal_env) -> Iterator[Stack]:
    with serve_asgi(create_kyc_sandbox(webhook_secret=KYC_SECRET, delay_seconds=0.3)) as kyc_url, \
            serve_asgi(create_notify_sandbox()) as notify_url, \
            serve_asgi(create_stripe_sandbox(webhook_url=None, webhook_secret=STRIPE_SECRET)) as stripe_url:
        target = temporal_env.client.service_client.config.target_host
        stack_settings = settings.model_copy(update={
            "kyc_api_base": kyc_url, "kyc_webhook_secret": KYC_SECRET, "notify_api_base": notify_url,
            "stripe_api_base": stripe_url, "stripe_api_key": STRIPE_KEY,
            "stripe_webhook_secret": STRIPE_SECRET, "temporal_address": target,
            "temporal_namespace": temporal_env.client.namespace,
            "kyc_document_timeout_seconds": 30.0,
            "withdrawal_approval_threshold_minor": APPROVAL_THRESHOLD,
            "withdrawal_payout_poll_seconds": 0.3,
        })
        api_engine = make_engine(sqlalchemy_url(database_url), pool_size=2, settings=stack_settings)
        worker_engine = make_engine(sqlalchemy_url(database_url), pool_size=3, settings=stack_settings)
        with serve_asgi(create_app(stack_settings, engine=api_engine)) as api_url:
            httpx.post(f"{kyc_url}/_sandbox/config",
                       json={"webhook_url": f"{api_url}/v1/webhooks/kyc"}).raise_for_status()
            # Payouts settle (or fail) quickly in the sandbox.
            httpx.post(f"{stripe_url}/_sandbox/config", json={"payout_settle_seconds": 0.2}).raise_for_status()
            yield Stack(stack_settings, api_url, kyc_url, notify_url, stripe_url, engine, worker_engine,
                        temporal_env.client)
        api_engine.dispose()
        worker_engine.dispose()


@pytest_asyncio.fixture
async def worker(stack: Stack) -> AsyncIterator[Worker]:
    async with stack.worker() as running:
        yield running


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0) as client:
        yield client


def make_player(stack: Stack, *, first_name: str = "Grace", last_name: str = "Hopper",
                date_of_birth: date | None = date(1990, 5, 17), jurisdiction: str = "US-NJ",
                located: bool = True) -> Player:
    """A fresh partner (with its key), an operator key, and an active player (located in NJ)."""
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    player_id = f"ply_{uuid.uuid4().hex[:16]}"
    email = f"{player_id}@example.test"
    now = datetime.now(UTC)
    with stack.engine.begin() as conn:
        _, plaintext = create_api_key(conn, "partner", partner_id, None, "kyc/withdrawal tests")
        _, operator = create_api_key(conn, "operator", None, None, "kyc/withdrawal tests operator")
        players.insert(conn, player_id=player_id, partner_id=partner_id, external_ref=None,
                       first_name=first_name, last_name=last_name, email=email,
                       date_of_birth=date_of_birth, jurisdiction=jurisdiction)
        if located:
            geolocation.insert(conn, geolocation.GeolocationCheck(
                id=geolocation.new_id(), player_id=player_id, checked_at=now, latitude=40.2206,
                longitude=-74.7597, ip_address="203.0.113.7", provider="test", jurisdiction="US-NJ",
                distance_to_border_miles=20.0, ip_country="US", ip_subdivision="NJ",
                anonymous_flags=(), allowed=True, code="allowed", reason="inside US-NJ",
                valid_until=now + timedelta(hours=1)))
    return Player(player_id, partner_id, email, {"Authorization": f"Bearer {plaintext}"},
                  {"Authorization": f"Bearer {operator}"})


def mark_kyc_verified(stack: Stack, player: Player) -> None:
    """Test setup only: a verified KYC case, as the KYC workflow leaves it."""
    with stack.engine.begin() as conn:
        kyc.open_case(conn, player.id)
        kyc.transition(conn, player.id, state=kyc.VERIFIED, step="document", detail={"setup": "test"})


def fund(stack: Stack, player: Player, amount: int, currency: str = "USD", tag: str = "funding") -> None:
    """Credit the player's cash as a deposit would: gateway clearing -> player cash."""
    with stack.engine.begin() as conn:
        result = ledger.post(conn, Transfer(
            key=f"test-{tag}-{player.id}", kind="deposit", reference=f"test-{tag}",
            legs=(Leg(AccountRef.gateway_clearing("stripe", currency), -amount),
                  Leg(AccountRef.player_cash(player.id, currency), amount))))
        assert result.ok, result


def card_deposit(stack: Stack, player: Player, amount: int, currency: str = "USD") -> str:
    """A real card payment at the Stripe sandbox recorded as a succeeded deposit, and its ledger
    credit: what a refund can go back to. Returns the deposit id."""
    gateway = stack.providers().gateway
    deposit_id = f"dep_test_{uuid.uuid4().hex[:16]}"
    intent = gateway.create_payment_intent(amount=amount, currency=currency, payment_method="pm_card_visa",
                                           idempotency_key=f"{deposit_id}:create")
    assert intent.succeeded, intent
    with stack.engine.begin() as conn:
        deposit_store.insert(conn, deposit_id=deposit_id, player_id=player.id, partner_id=player.partner_id,
                             amount=amount, currency=currency, payment_method="pm_card_visa",
                             created_by="system:test")
        result = ledger.post(conn, Transfer(
            key=f"deposit-{deposit_id}:credit", kind="deposit", reference=deposit_id,
            legs=(Leg(AccountRef.gateway_clearing("stripe", currency), -amount),
                  Leg(AccountRef.player_cash(player.id, currency), amount))))
        assert result.ok
        deposit_store.mark_succeeded(conn, deposit_id, payment_intent=intent.id, charge=intent.latest_charge,
                                     ledger_transaction_id=result.transaction_id)
    return deposit_id


def balance(stack: Stack, player: Player, currency: str = "USD") -> dict[str, int]:
    with stack.engine.connect() as conn:
        cash = ledger.balance(conn, AccountRef.player_cash(player.id, currency))
        pending = ledger.balance(conn, AccountRef.pending_withdrawal(player.id, currency))
    return {"cash": cash.posted, "held": cash.pending_debits, "available": cash.available,
            "pending_withdrawal": pending.posted, "pending_withdrawal_incoming": pending.pending_credits}


def ledger_violations(stack: Stack) -> list[str]:
    from ledger import check
    with stack.engine.connect() as conn:
        return check.run(conn)


def events(stack: Stack, aggregate_id: str) -> list[str]:
    with stack.engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT event_type FROM outbox_events WHERE aggregate_id = :id ORDER BY id"),
            {"id": aggregate_id}).scalars())


def audit_actions(stack: Stack, subject_id: str) -> list[str]:
    with stack.engine.connect() as conn:
        rows = conn.execute(text("SELECT record FROM audit_log WHERE record LIKE :pattern ORDER BY seq"),
                            {"pattern": f'%"subject_id":"{subject_id}"%'}).scalars()
        return [json.loads(row)["action"] for row in rows]


async def wait_until(probe, timeout: float = 20.0, interval: float = 0.1):  # noqa: ANN001, ANN201
    """Poll `probe()` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
