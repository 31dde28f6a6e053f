"""Withdrawal steps and probes the end-to-end withdrawal tests share: start one through the API,
read it, wait for a state, read the one-time code the notification sandbox 'sent', submit a
code, record a payout destination, and a KYC-verified player with cash."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.support.factories import Player, fund, make_player, mark_kyc_verified, wait_until
from tests.support.stack import Stack

FINAL = ("paid", "cancelled", "rejected", "failed")


async def start(http: httpx.AsyncClient, player: Player, amount: int, *,
                idempotency_key: str | None = None, **extra: Any) -> dict[str, Any]:
    answer = await http.post("/v1/withdrawals", headers={
        **player.headers, "Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        json={"player_id": player.id, "amount": amount, "currency": "USD", **extra})
    assert answer.status_code == 202, answer.text
    return answer.json()


async def get(http: httpx.AsyncClient, player: Player, withdrawal_id: str) -> dict[str, Any]:
    answer = await http.get(f"/v1/withdrawals/{withdrawal_id}", headers=player.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def wait_state(http: httpx.AsyncClient, player: Player, withdrawal_id: str,
                     states: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body = await get(http, player, withdrawal_id)
        return body if body["state"] in states else None
    return await wait_until(probe, timeout)


async def code_for(stack: Stack, player: Player, withdrawal_id: str) -> str:
    """The one-time code from the notification sandbox's outbox."""
    messages = await wait_until(lambda: [
        m for m in stack.outbox(player.email)
        if m["idempotency_key"] == f"withdrawal-{withdrawal_id}:2fa-code"])
    assert len(messages) == 1   # sent once, whatever retried
    match = re.search(r"\b(\d{6})\b", messages[0]["body"])
    assert match is not None
    return match.group(1)


async def submit(http: httpx.AsyncClient, player: Player, withdrawal_id: str,
                 code: str) -> httpx.Response:
    return await http.post(f"/v1/withdrawals/{withdrawal_id}/2fa", headers=player.headers,
                           json={"code": code})


async def confirm(stack: Stack, http: httpx.AsyncClient, player: Player,
                  withdrawal_id: str) -> dict[str, Any]:
    """Answer the one-time code, then wait for the withdrawal to finish."""
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    answer = await submit(http, player, withdrawal_id,
                          await code_for(stack, player, withdrawal_id))
    assert answer.status_code == 200, answer.text
    return await wait_state(http, player, withdrawal_id, FINAL)


async def add_destination(http: httpx.AsyncClient, player: Player, destination: str) -> None:
    answer = await http.post(f"/v1/players/{player.id}/payout_destinations",
                             headers=player.headers, json={"destination": destination})
    assert answer.status_code in (200, 201), answer.text


def ready_player(stack: Stack, cash: int = 5_000) -> Player:
    """A KYC-verified player located in NJ, with `cash` (USD minor units) to withdraw."""
    player = make_player(stack.engine)
    mark_kyc_verified(stack.engine, player)
    if cash:
        fund(stack.engine, player, cash)
    return player
