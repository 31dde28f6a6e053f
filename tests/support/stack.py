"""The whole settlepay stack for end-to-end tests, every piece real and over real HTTP:

  Stripe sandbox  <-- adapter --  worker (this event loop): deposit, KYC, withdrawal workflows
     |  signed webhooks               ^  start / signal / update          |
     v                                |                                   v
  settlepay API (uvicorn thread, own Temporal client)  <-- httpx --  the test
     ^  signed webhook                                      notify sandbox (one-time codes)
  KYC sandbox

Timings are short (deposit webhook wait 1 s, polling 0.5 s; payouts settle in 0.2 s) so that
fallbacks run within seconds. Each test makes its own partner, player and API keys
(tests/support/factories.py), so tests never read each other's rows. The fixtures `stack`,
`worker` and `http` are registered for every test by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.gateway.stripe_gateway import StripeGateway
from adapters.kyc import HttpKycProvider
from adapters.notify import HttpNotifier
from api.app import create_app
from sandboxes.kyc import create_app as create_kyc_sandbox
from sandboxes.notify import create_app as create_notify_sandbox
from sandboxes.stripe import create_app as create_stripe_sandbox
from settlepay import task_queues
from settlepay.config import Settings
from settlepay.db import make_engine
from tests.support.databases import sqlalchemy_url
from tests.support.servers import serve_asgi
from workers import wiring
from workers.main import workflow_runner
from workers.providers import Providers

KYC_SECRET = "whsec_" + "a3ljdGVzdHNlY3JldGZvcnRoZXN0YWNr"   # base64 of a test secret
STRIPE_WEBHOOK_SECRET = "whsec_settlepay_stack_tests"
STRIPE_KEY = "sk_test_settlepay_stack_tests"
APPROVAL_THRESHOLD = 50_000


@dataclass
class Stack:
    settings: Settings
    api_url: str
    stripe_url: str
    kyc_url: str
    notify_url: str
    engine: Engine               # the test's own reads and setup
    worker_engine: Engine
    client: Client               # the test's Temporal client (the dev server's)

    # --- the worker -----------------------------------------------------------------------
    def gateway(self) -> StripeGateway:
        return StripeGateway(api_key=STRIPE_KEY, api_base=self.stripe_url,
                             webhook_secret=STRIPE_WEBHOOK_SECRET, timeout_seconds=2.0)

    def providers(self) -> Providers:
        return Providers(gateway=self.gateway(),
                         kyc=HttpKycProvider(base_url=self.kyc_url, timeout_seconds=2.0),
                         notifier=HttpNotifier(base_url=self.notify_url, timeout_seconds=2.0))

    @asynccontextmanager
    async def worker(self, client: Client | None = None) -> AsyncIterator[Worker]:
        """A worker on the main task queue, with the workflows and activities production runs."""
        workflows, activities = wiring.main_queue(self.worker_engine, self.settings,
                                                  self.providers())
        executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stack-test-act")
        worker = Worker(client or self.client, task_queue=task_queues.MAIN, workflows=workflows,
                        activities=activities, activity_executor=executor,
                        max_concurrent_activities=8, workflow_runner=workflow_runner(),
                        graceful_shutdown_timeout=timedelta(seconds=2))
        try:
            async with worker:
                yield worker
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    # --- sandbox controls -------------------------------------------------------------------
    def faults(self, **faults: Any) -> None:
        """Reset the Stripe sandbox's faults, then set `faults` (none: a healthy gateway)."""
        httpx.delete(f"{self.stripe_url}/_sandbox/faults").raise_for_status()
        if faults:
            httpx.post(f"{self.stripe_url}/_sandbox/faults", json=faults).raise_for_status()

    def payment_intents(self, deposit_id: str) -> list[dict[str, Any]]:
        return httpx.get(f"{self.stripe_url}/_sandbox/payment_intents",
                         params={"key": "settlepay_deposit_id", "value": deposit_id}).json()["data"]

    def gateway_requests(self, path: str) -> list[dict[str, Any]]:
        return httpx.get(f"{self.stripe_url}/_sandbox/requests",
                         params={"path": path}).json()["data"]

    def webhook_attempts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.stripe_url}/_sandbox/webhooks").json()["attempts"]

    def outbox(self, to: str) -> list[dict[str, Any]]:
        """Messages the notify sandbox 'sent' to `to` (one-time codes)."""
        return httpx.get(f"{self.notify_url}/_sandbox/outbox", params={"to": to}).json()["data"]


@pytest.fixture(scope="session")
def stack(settings: Settings, database_url: str, engine: Engine,
          temporal_env: WorkflowEnvironment) -> Iterator[Stack]:
    with serve_asgi(create_kyc_sandbox(webhook_secret=KYC_SECRET, delay_seconds=0.3)) as kyc_url, \
            serve_asgi(create_notify_sandbox()) as notify_url, \
            serve_asgi(create_stripe_sandbox(webhook_url=None,
                                             webhook_secret=STRIPE_WEBHOOK_SECRET)) as stripe_url:
        target = temporal_env.client.service_client.config.target_host
        stack_settings = settings.model_copy(update={
            "stripe_api_base": stripe_url, "stripe_api_key": STRIPE_KEY,
            "stripe_webhook_secret": STRIPE_WEBHOOK_SECRET, "stripe_timeout_seconds": 2.0,
            "kyc_api_base": kyc_url, "kyc_webhook_secret": KYC_SECRET,
            "notify_api_base": notify_url,
            "temporal_address": target, "temporal_namespace": temporal_env.client.namespace,
            "deposit_webhook_wait_seconds": 1.0, "deposit_poll_interval_seconds": 0.5,
            "deposit_timeout_seconds": 8.0,
            "kyc_document_timeout_seconds": 30.0,
            "withdrawal_approval_threshold_minor": APPROVAL_THRESHOLD,
            "withdrawal_payout_poll_seconds": 0.3,
        })
        api_engine = make_engine(sqlalchemy_url(database_url), pool_size=3,
                                 settings=stack_settings)
        worker_engine = make_engine(sqlalchemy_url(database_url), pool_size=3,
                                    settings=stack_settings)
        # The API gets its own Temporal client (made on its own event loop, in its thread).
        with serve_asgi(create_app(stack_settings, engine=api_engine)) as api_url:
            httpx.post(f"{stripe_url}/_sandbox/config", json={
                "webhook_url": f"{api_url}/v1/webhooks/stripe",
                "payout_settle_seconds": 0.2}).raise_for_status()
            httpx.post(f"{kyc_url}/_sandbox/config",
                       json={"webhook_url": f"{api_url}/v1/webhooks/kyc"}).raise_for_status()
            yield Stack(stack_settings, api_url, stripe_url, kyc_url, notify_url, engine,
                        worker_engine, temporal_env.client)
        api_engine.dispose()
        worker_engine.dispose()


@pytest_asyncio.fixture
async def worker(stack: Stack) -> AsyncIterator[Worker]:
    stack.faults()
    async with stack.worker() as running:
        yield running
    stack.faults()


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0, limits=limits) as client:
        yield client
