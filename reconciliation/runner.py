"""One reconciliation run: read the three sides, reconcile, auto-repair the safe breaks, record.

Safe repairs go through the normal paths and their own keys, so a repair is never done twice:
  - BOOK_FEE         commands.reconciliation.book_fee (ledger key recon:fee:<charge>)
  - CREDIT_DEPOSIT   commands.reconciliation.credit_deposit -> commands.deposits.credit
                     (the deposit's own ledger key)
  - RESTART_DEPOSIT  the deposit's own workflow, started under its own id with
                     REJECT_DUPLICATE: a workflow that ever ran is never started again
A repair that no longer applies (the state moved on) leaves its break open for an operator.
A gateway that cannot be read makes the run `incomplete` (recorded, with the error).

The gateway is read up to the window's cut-off (`created <= window.end`, Stripe's
`created[lte]`): what the gateway does after it cannot change a closed window's verdict, so
re-running a closed window gives the same verdict.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, RowMapping
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from adapters.gateway import GatewayError, PaymentGateway
from commands import reconciliation as commands
from reconciliation.engine import reconcile
from reconciliation.model import Break, Outcome, Repair, Window
from reconciliation.sources import Progress, at, read_gateway, read_ours_and_ledger
from settlepay import search_attributes as sa
from settlepay import task_queues
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import deposits as deposit_store
from store import reconciliation as store
from workflows.contracts.deposit import WORKFLOW as DEPOSIT_WORKFLOW
from workflows.contracts.deposit import DepositRequest, DepositStatus

# How far before the window's start the gateway is read: a payment is created after its
# deposit row, so only clock skew between us and the gateway needs covering.
GATEWAY_MARGIN_SECONDS = 300


@dataclass
class RunOptions:
    window: Window
    provider: str = "stripe"
    grace_seconds: int = 900
    hold_max_seconds: int = 3 * 86400
    repair: bool = True
    run_id: str = field(default_factory=lambda: f"recon_{uuid.uuid4().hex[:20]}")
    actor: str = "reconciliation"


def options_from(settings: Settings, window: Window, *, repair: bool = True,
                 run_id: str | None = None, actor: str = "reconciliation") -> RunOptions:
    options = RunOptions(window=window, provider=settings.withdrawal_gateway_provider,
                         grace_seconds=settings.reconciliation_grace_seconds,
                         hold_max_seconds=settings.reconciliation_hold_max_seconds,
                         repair=repair, actor=actor)
    if run_id:
        options.run_id = run_id
    return options


def default_since(engine: Engine, provider: str, until: int) -> int:
    """Where the last complete run's window ended (windows follow each other), else a day
    before `until`."""
    with engine.connect() as conn:
        last = store.last_run(conn, provider)
    if last is not None and int(last["window_end"].timestamp()) < until:
        return int(last["window_end"].timestamp())
    return until - 86_400


@dataclass
class RunResult:
    run: RowMapping
    outcome: Outcome | None
    repaired: dict[int, str]


async def run(engine: Engine, settings: Settings, gateway: PaymentGateway,
              options: RunOptions, *, client: Client | None = None,
              progress: Progress | None = None, now: int | None = None) -> RunResult:
    as_of = int(time.time()) if now is None else now
    actor = f"{options.actor}:{options.run_id}"
    meta: dict[str, Any] = {"id": options.run_id, "provider": options.provider,
                            "window_start": at(options.window.start),
                            "window_end": at(options.window.end), "as_of": at(as_of),
                            "gateway_rows": 0, "error": None}
    outcome: Outcome | None = None
    repaired: dict[int, str] = {}
    try:
        records, rows = await asyncio.to_thread(
            read_gateway, gateway, since=options.window.start - GATEWAY_MARGIN_SECONDS,
            until=options.window.end + 1, progress=progress)     # created <= the cut-off
        meta["gateway_rows"] = rows
        ours, ledger = await asyncio.to_thread(read_ours_and_ledger, engine,
                                               provider=options.provider,
                                               window=options.window, gateway=records)
        outcome = reconcile(records, ours, ledger, window=options.window, as_of=as_of,
                            grace_seconds=options.grace_seconds,
                            hold_max_seconds=options.hold_max_seconds, book_fees=options.repair)
    except GatewayError as error:
        meta["error"] = f"the gateway could not be read: {error}"
    if outcome is not None:
        for fee in outcome.fees_due:     # the day's fees: booked, or a break if refused
            if await _repair(engine, settings, fee, options, actor, client) is None:
                outcome.breaks.append(fee)
                outcome.matched -= 1
                outcome.matched_amount -= int(fee.gateway[0]["amount"])
            else:
                meta["fees_booked"] = meta.get("fees_booked", 0) + 1
    if outcome is not None and options.repair:
        for index, item in enumerate(outcome.breaks):
            done = await _repair(engine, settings, item, options, actor, client)
            if done is not None:
                repaired[index] = done
    row = await asyncio.to_thread(run_in_transaction, engine, lambda conn: commands.record_run(
        conn, run=meta, outcome=outcome, repaired=repaired, actor=actor))
    return RunResult(row, outcome, repaired)


async def _repair(engine: Engine, settings: Settings, item: Break, options: RunOptions,
                  actor: str, client: Client | None) -> str | None:
    """What repaired `item` (a sentence for the break's resolution), or None."""
    try:
        if item.repair is Repair.BOOK_FEE:
            txn = await asyncio.to_thread(run_in_transaction, engine, lambda conn:
                                          commands.book_fee(conn, item, provider=options.provider,
                                                            actor=actor))
            return f"fee booked: ledger transaction {txn}"
        if item.repair is Repair.CREDIT_DEPOSIT:
            txn = await asyncio.to_thread(run_in_transaction, engine, lambda conn:
                                          commands.credit_deposit(conn, item, actor=actor))
            if int(item.gateway[0].get("fee") or 0) > 0:   # its fee with it, its own key
                await asyncio.to_thread(run_in_transaction, engine, lambda conn:
                                        commands.book_fee(conn, item,
                                                          provider=options.provider,
                                                          actor=actor))
            return f"deposit credited: ledger transaction {txn}"
        if item.repair is Repair.RESTART_DEPOSIT and client is not None:
            started = await restart_deposit(engine, settings, client, item.key, actor)
            return "deposit workflow started" if started else None
    except commands.RepairRefused:
        return None
    return None


async def restart_deposit(engine: Engine, settings: Settings, client: Client, deposit_id: str,
                          actor: str) -> bool:
    """Start the workflow of a deposit still `pending` under its own id; False when that id
    ever ran (REJECT_DUPLICATE) or the deposit moved on."""
    def read() -> RowMapping | None:
        with engine.connect() as conn:
            return deposit_store.get(conn, deposit_id)

    row = await asyncio.to_thread(read)
    if row is None or row["status"] != DepositStatus.PENDING:
        return False
    request = DepositRequest(
        deposit_id=deposit_id, player_id=row["player_id"], partner_id=row["partner_id"],
        amount=row["amount"], currency=row["currency"], payment_method=row["payment_method"],
        actor=actor, return_url=settings.deposit_return_url,
        webhook_wait_seconds=settings.deposit_webhook_wait_seconds,
        poll_interval_seconds=settings.deposit_poll_interval_seconds,
        timeout_seconds=settings.deposit_timeout_seconds,
        processing_limit_seconds=settings.deposit_processing_limit_seconds)
    try:
        await client.start_workflow(
            DEPOSIT_WORKFLOW, request, id=row["workflow_id"], task_queue=task_queues.MAIN,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.PLAYER_ID, request.player_id),
                SearchAttributePair(sa.AMOUNT, request.amount),
                SearchAttributePair(sa.CURRENCY, request.currency),
                SearchAttributePair(sa.PAYMENT_STATE, DepositStatus.PENDING.search_value)]))
    except WorkflowAlreadyStartedError:
        return False
    return True
