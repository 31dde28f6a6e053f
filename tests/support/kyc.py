"""KYC steps and probes the end-to-end KYC tests share: send a document through the API, read
the case as the player resource shows it, wait for a state, read the sandbox's checks, and
deliver a provider verdict on demand (the KYC sandbox's test control)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import Engine

import audit
from tests.support.factories import Player, wait_until
from tests.support.stack import Stack

FINAL = ("verified", "rejected", "expired")


async def submit(http: httpx.AsyncClient, player: Player,
                 number: str = "P1234567") -> httpx.Response:
    return await http.post(f"/v1/players/{player.id}/kyc", headers=player.headers, json={
        "document": {"type": "passport", "number": number, "country": "US"}})


async def kyc_of(http: httpx.AsyncClient, player: Player) -> dict[str, Any]:
    answer = await http.get(f"/v1/players/{player.id}", headers=player.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["kyc"]


async def wait_kyc(http: httpx.AsyncClient, player: Player, states: tuple[str, ...],
                   timeout: float = 20.0) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        kyc = await kyc_of(http, player)
        return kyc if kyc["status"] in states else None
    return await wait_until(probe, timeout)


def checks_of(stack: Stack, player: Player) -> list[dict[str, Any]]:
    """The checks the KYC sandbox holds for the player's documents, oldest first."""
    checks = httpx.get(f"{stack.kyc_url}/_sandbox/checks").json()["data"]
    return [c for c in checks if c["reference"].startswith(f"kyc-{player.id}:")]


def provider_answers(stack: Stack, check_id: str, result: str, next_step: str | None = None,
                     reason: str | None = None) -> list[dict[str, Any]]:
    """The sandbox delivers a verdict for `check_id` now; its delivery attempts, each with our
    webhook's answer."""
    answer = httpx.post(f"{stack.kyc_url}/_sandbox/checks/{check_id}/verdict",
                        json={"result": result, "next": next_step, "reason": reason})
    answer.raise_for_status()
    return answer.json()["attempts"]


@contextmanager
def webhooks_lost(stack: Stack) -> Iterator[None]:
    """The KYC sandbox decides each check at once but delivers no webhook (as a verdict lost
    past the provider's retries); its usual delivery to the API is restored on exit."""
    config = f"{stack.kyc_url}/_sandbox/config"
    usual = httpx.get(config).json()
    httpx.post(config, json={"webhook_url": None, "delay_seconds": 0.0}).raise_for_status()
    try:
        yield
    finally:
        httpx.post(config, json={"webhook_url": usual["webhook_url"],
                                 "delay_seconds": usual["delay_seconds"]}).raise_for_status()


def deliveries_of(stack: Stack, check_id: str) -> list[dict[str, Any]]:
    """The sandbox's webhook delivery attempts for a check."""
    attempts = httpx.get(f"{stack.kyc_url}/_sandbox/webhooks").json()["attempts"]
    return [a for a in attempts if a["check_id"] == check_id]


def audit_chain_problems(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return audit.verify(conn).problems
