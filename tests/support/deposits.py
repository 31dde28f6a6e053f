"""Deposit helpers the deposit tests share: POST a deposit, wait for its status, read its
workflow's PaymentState, its ledger credits and its Stripe events. Every read goes to the real
API, the real database or the real Temporal server."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import Engine, text

from api.workflow_start import start_money_workflow
from commands import deposits as commands
from settlepay import search_attributes
from store import deposits as store
from tests.support.factories import Player
from tests.support.stack import Stack
from workflows.contracts.deposit import (
    WORKFLOW,
    DepositRequest,
    DepositStatus,
    deposit_id_for,
    workflow_id,
)


def deposit_body(player: Player, amount: int = 2_500, payment_method: str = "pm_card_visa",
                 currency: str = "USD") -> dict[str, Any]:
    return {"player_id": player.id, "amount": amount, "currency": currency,
            "payment_method": payment_method}


async def post_deposit(http: httpx.AsyncClient, player: Player, key: str | None = None,
                       **body: Any) -> httpx.Response:
    headers = dict(player.headers)
    headers["Idempotency-Key"] = key or uuid.uuid4().hex
    return await http.post("/v1/deposits", json=deposit_body(player, **body), headers=headers)


async def wait_for_status(http: httpx.AsyncClient, player: Player, deposit_id: str,
                          statuses: tuple[str, ...] = ("succeeded", "failed"),
                          timeout: float = 20.0) -> dict[str, Any]:
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


async def payment_state(stack: Stack, deposit_id: str, expected: str,
                        timeout: float = 5.0) -> str | None:
    """The deposit workflow's PaymentState search attribute, once it is `expected` (or the last
    value seen): the workflow upserts it just after the activity that changed the row."""
    deadline = time.monotonic() + timeout
    while True:
        described = await stack.client.get_workflow_handle(f"deposit-{deposit_id}").describe()
        state = {k.name: v for k, v in described.typed_search_attributes}.get("PaymentState")
        if state == expected or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.05)


def ledger_credits(engine: Engine, deposit_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, idempotency_key, kind, result FROM ledger_transactions "
            "WHERE reference = :ref"), {"ref": deposit_id})]


def stripe_events(engine: Engine, deposit_id: str) -> dict[str, list[str]]:
    """The Stripe events stored for a deposit: type -> outcomes."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT type, outcome FROM stripe_events WHERE deposit_id = :id"),
                            {"id": deposit_id}).all()
    out: dict[str, list[str]] = {}
    for type_, outcome in rows:
        out.setdefault(type_, []).append(outcome)
    return out


def deposits_of(engine: Engine, player: Player) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM deposits WHERE player_id = :p"),
                            {"p": player.id}).scalar_one()


async def workflow_runs(stack: Stack, deposit_id: str) -> int:
    """How many runs the deposit's workflow id has had (open and closed), once visibility has
    caught up with at least one."""
    query = f"WorkflowId = 'deposit-{deposit_id}'"
    count = 0
    for _ in range(100):   # visibility is eventually consistent
        count = len([w async for w in stack.client.list_workflows(query)])
        if count:
            return count
        await asyncio.sleep(0.1)
    return count


async def start_deposit(stack: Stack, player: Player, amount: int = 2_500,
                        payment_method: str = "pm_card_visa", **timings: float) -> str:
    """A deposit as the API makes one (the row through its command, the workflow through the
    API's start helper), with the workflow's timings overridden: returns the deposit id."""
    settings = stack.settings
    deposit_id = deposit_id_for(f"tests-{uuid.uuid4().hex}")
    with stack.engine.begin() as conn:
        commands.create(conn, deposit_id=deposit_id,
                        player={"id": player.id, "partner_id": player.partner_id},
                        amount=amount, currency="USD", payment_method=payment_method,
                        actor="api_key:tests")
    request = DepositRequest(
        deposit_id, player.id, player.partner_id, amount, "USD", payment_method, "api_key:tests",
        return_url=settings.deposit_return_url,
        **{"webhook_wait_seconds": settings.deposit_webhook_wait_seconds,
           "poll_interval_seconds": settings.deposit_poll_interval_seconds,
           "timeout_seconds": settings.deposit_timeout_seconds,
           "processing_limit_seconds": settings.deposit_processing_limit_seconds, **timings})
    assert await start_money_workflow(stack.client, WORKFLOW, request,
                                      workflow_id=workflow_id(deposit_id),
                                      state_key=search_attributes.PAYMENT_STATE,
                                      state=DepositStatus.PENDING.search_value)
    return deposit_id


def deposit_row(engine: Engine, deposit_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = store.get(conn, deposit_id)
    assert row is not None
    return dict(row)
