"""/v1/deposits: start a deposit (202, the workflow does the rest) and read one.

POST requires an Idempotency-Key: the deposit id is derived from (API key, Idempotency-Key), so
every retry, even one after a crash between the insert and the workflow start, lands on the same
deposit row and the same workflow `deposit-<id>` (an "already started" answer is success).
HTTP in, command out: the gates, the gateway and the ledger are the workflow's business.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

import audit
import outbox
from activities.deposit import DepositRequest
from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings, get_temporal
from api.idempotency import IdempotencyKey, required_idempotency_key
from api.problems import PROBLEM_RESPONSES, not_found
from api.scopes import Scope
from api.workflow_start import start_money_workflow
from settlepay import search_attributes as sa
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import deposits as store

router = APIRouter(prefix="/v1/deposits", tags=["deposits"], responses=PROBLEM_RESPONSES)

WORKFLOW = "Deposit"  # workflows/deposit.py; by name, so the API never loads workflow code


class DepositCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    player_id: str = Field(min_length=1, max_length=64)
    amount: StrictInt = Field(gt=0, le=10**12, description="Minor units (e.g. cents); an integer.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, upper case.")
    payment_method: str = Field(min_length=3, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$",
                                description="Gateway payment method id (test: pm_card_visa).")
    ip_address: IPv4Address | IPv6Address | None = Field(
        None, description="The player's IP address, checked against the geolocation on record.")
    return_url: str | None = Field(None, max_length=2048, pattern=r"^https?://",
                                   description="Where the player returns after 3-D Secure.")


class GatewayRefs(BaseModel):
    provider: str
    payment_intent: str | None
    charge: str | None


class Deposit(BaseModel):
    object: Literal["deposit"] = "deposit"
    id: str
    status: Literal["pending", "processing", "requires_action", "succeeded", "failed"]
    player_id: str
    amount: int
    currency: str
    payment_method: str
    failure_code: str | None
    failure_reason: str | None
    next_action: dict[str, Any] | None = Field(
        description="For requires_action: where to send the player (3-D Secure).")
    gateway: GatewayRefs
    ledger_transaction_id: int | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None
    failed_at: datetime | None


@router.post("", status_code=202, response_model=Deposit, summary="Start a deposit")
async def create(body: DepositCreate, response: Response,
                 principal: Principal = Depends(require(Scope.DEPOSITS_WRITE)),
                 idem: IdempotencyKey = Depends(required_idempotency_key),
                 engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
                 client: Client = Depends(get_temporal)) -> dict[str, Any]:
    deposit_id = store.deposit_id_for(idem.operation_id)

    def record(conn):  # noqa: ANN001, ANN202
        player = visible_player(conn, principal, body.player_id)
        row, created = store.insert(conn, deposit_id=deposit_id, player_id=player["id"],
                                    partner_id=player["partner_id"], amount=body.amount,
                                    currency=body.currency, payment_method=body.payment_method,
                                    created_by=principal.actor)
        if created:
            audit.record(conn, actor=principal.actor, action="deposit.created", subject_type="deposit",
                         subject_id=deposit_id, before=None, after=store.as_record(row))
            outbox.emit(conn, event_type="deposit.created", aggregate_type="deposit",
                        aggregate_id=deposit_id, payload=store.resource(row),
                        player_id=row["player_id"], partner_id=row["partner_id"])
        return row

    row = await run_in_threadpool(run_in_transaction, engine, record)
    request = DepositRequest(
        deposit_id=deposit_id, player_id=row["player_id"], partner_id=row["partner_id"],
        amount=row["amount"], currency=row["currency"], payment_method=row["payment_method"],
        actor=principal.actor, ip_address=None if body.ip_address is None else str(body.ip_address),
        return_url=body.return_url or settings.deposit_return_url,
        webhook_wait_seconds=settings.deposit_webhook_wait_seconds,
        poll_interval_seconds=settings.deposit_poll_interval_seconds,
        timeout_seconds=settings.deposit_timeout_seconds)
    await start_money_workflow(client, WORKFLOW, request, workflow_id=row["workflow_id"],
                               state_key=sa.PAYMENT_STATE, state="PENDING")
    response.headers["Location"] = f"/v1/deposits/{deposit_id}"
    return store.resource(row)


@router.get("/{deposit_id}", response_model=Deposit, summary="Retrieve a deposit")
def retrieve(deposit_id: str, principal: Principal = Depends(require(Scope.DEPOSITS_WRITE)),
             engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    with engine.connect() as conn:
        row = store.get(conn, deposit_id, partner_id=None if principal.is_operator else principal.partner_id)
    if row is None:
        raise not_found("deposit", deposit_id)
    return store.resource(row)
