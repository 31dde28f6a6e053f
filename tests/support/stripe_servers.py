"""Stripe-compatible servers for the gateway and sandbox tests, each over real HTTP.

- `sandbox_url` / `sandbox`: our own Stripe sandbox (sandboxes/stripe), in a thread.
- `localstripe_url`: the independent emulator from PyPI, as a subprocess on a free port.
- `stripe_server`: parametrized over both, so the SAME contract runs against each.
Test-card tokens differ between the two where their card tables differ (a decline at confirm).
A test directory uses them by naming them in its conftest.py (`sandbox = stripe_servers.sandbox`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from adapters.gateway.stripe_gateway import StripeGateway
from sandboxes.stripe import create_app
from tests.support.net import free_port
from tests.support.servers import serve_asgi

API_KEY = "sk_test_contract"
WEBHOOK_SECRET = "whsec_contract_tests"


@dataclass(frozen=True)
class Server:
    name: str
    base_url: str
    gateway: StripeGateway
    declined_card: str          # a token whose confirm is declined


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with serve_asgi(create_app(webhook_url=None, webhook_secret=WEBHOOK_SECRET)) as url:
        yield url


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[Server]:
    gateway = StripeGateway(api_key=API_KEY, api_base=sandbox_url, webhook_secret=WEBHOOK_SECRET,
                            timeout_seconds=2.0)
    yield Server("sandbox", sandbox_url, gateway, "pm_card_chargeDeclined")
    httpx.delete(f"{sandbox_url}/_sandbox/faults")


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "localstripe", "--port", str(port),
                             "--from-scratch"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=1)
            break
        except httpx.HTTPError as error:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("localstripe did not start") from error
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["sandbox", "localstripe"])
def stripe_server(request: pytest.FixtureRequest) -> Server:
    if request.param == "sandbox":
        return request.getfixturevalue("sandbox")
    url = request.getfixturevalue("localstripe_url")
    # localstripe declines at charge time only for 4000000000000341 (Stripe's "attach succeeds,
    # charge fails" card); our sandbox knows that token too.
    return Server("localstripe", url,
                  StripeGateway(api_key=API_KEY, api_base=url, timeout_seconds=5.0),
                  "pm_card_chargeCustomerFail")
