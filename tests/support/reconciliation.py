"""Reconciliation scenarios over the real stack: deposits and withdrawal legs made at the Stripe
sandbox with our keys in their metadata (as the activities send them), our rows through the
commands and stores, and runs over a window of their own."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy import Engine, text

import ledger
from adapters.gateway import GatewayDeclined, PaymentIntent
from commands import deposits as deposit_commands
from ledger import AccountRef, Leg, Transfer
from reconciliation import runner
from reconciliation.model import Window
from store import withdrawals as withdrawal_store
from tests.support.factories import Player, fund, wait_until
from tests.support.stack import Stack
from workflows.contracts.deposit import Credit, deposit_id_for
from workflows.contracts.withdrawal import LegState, WithdrawalState


async def next_second() -> int:
    """The next whole second, once it has come: a window starting there holds nothing older."""
    now = int(time.time())
    await wait_until(lambda: int(time.time()) > now, timeout=3, interval=0.02)
    return now + 1


def new_deposit(stack: Stack, player: Player, amount: int) -> str:
    deposit_id = deposit_id_for(f"recon-{uuid.uuid4().hex}")
    with stack.engine.begin() as conn:
        deposit_commands.create(conn, deposit_id=deposit_id,
                                player={"id": player.id, "partner_id": player.partner_id},
                                amount=amount, currency="USD", payment_method="pm_card_visa",
                                actor="api_key:tests")
    return deposit_id


def charge(stack: Stack, deposit_id: str, player: Player, amount: int,
           card: str = "pm_card_visa") -> PaymentIntent:
    """The payment the deposit's activity would create (same metadata and key)."""
    try:
        return stack.gateway().create_payment_intent(
            amount=amount, currency="USD", payment_method=card,
            idempotency_key=f"deposit-{deposit_id}:create:{uuid.uuid4().hex[:6]}",
            metadata={"settlepay_deposit_id": deposit_id, "player_id": player.id})
    except GatewayDeclined as declined:
        assert declined.payment_intent is not None
        return declined.payment_intent


def credit(stack: Stack, deposit_id: str, player: Player, amount: int,
           intent: PaymentIntent) -> None:
    with stack.engine.begin() as conn:
        deposit_commands.credit(conn, Credit(deposit_id, player.id, amount, "USD", intent.id,
                                             intent.latest_charge), actor="system:test")


def paid_deposit(stack: Stack, player: Player, amount: int) -> tuple[str, PaymentIntent]:
    deposit_id = new_deposit(stack, player, amount)
    intent = charge(stack, deposit_id, player, amount)
    credit(stack, deposit_id, player, amount, intent)
    return deposit_id, intent


def paid_withdrawal(stack: Stack, player: Player, amount: int, *, gateway_ref: str | None,
                    method: str = "payout", state: WithdrawalState = WithdrawalState.PAID,
                    clear: bool = True) -> str:
    """A withdrawal of one leg recorded as our side would (row, leg confirmed with its gateway
    reference, state, and the clearing posting): what the gateway did is up to the test."""
    wid = f"wd_recon_{uuid.uuid4().hex[:12]}"
    fund(stack.engine, player, amount, tag=wid)
    with stack.engine.begin() as conn:
        withdrawal_store.insert(conn, withdrawal_id=wid, player_id=player.id,
                                partner_id=player.partner_id, amount=amount, currency="USD")
        withdrawal_store.insert_payouts(conn, [{
            "withdrawal_id": wid, "n": 1, "method": method, "deposit_id": None,
            "payment_ref": None, "amount": amount, "currency": "USD",
            "idempotency_key": f"withdrawal-{wid}:{method}"}])
        withdrawal_store.mark_sending(conn, wid, 1)
        if gateway_ref is not None:
            withdrawal_store.mark_payout(conn, wid, 1, state=LegState.CONFIRMED,
                                         gateway_ref=gateway_ref)
        withdrawal_store.transition(conn, wid, state=state, step="test", outcome=str(state),
                                    **({"paid_amount": amount} if state == "paid" else {}))
        if clear:
            assert ledger.post(conn, Transfer(
                key=f"withdrawal-{wid}:clear", kind="withdrawal", reference=wid,
                legs=(Leg(AccountRef.player_cash(player.id, "USD"), -amount),
                      Leg(AccountRef.gateway_clearing("stripe", "USD"), amount)))).ok
    return wid


def dispute(stack: Stack, intent: PaymentIntent) -> dict[str, Any]:
    answer = httpx.post(f"{stack.stripe_url}/_sandbox/charges/{intent.latest_charge}/dispute")
    answer.raise_for_status()
    return answer.json()


async def run(stack: Stack, start: int, *, grace_seconds: int = 0, repair: bool = True,
              hold_max_seconds: int = 86_400, end: int | None = None,
              client: Any = None) -> runner.RunResult:
    now = int(time.time()) + 1
    options = runner.RunOptions(window=Window(start, end or now), grace_seconds=grace_seconds,
                                hold_max_seconds=hold_max_seconds, repair=repair,
                                actor="tests")
    return await runner.run(stack.engine, stack.settings, stack.gateway(), options,
                            client=client, now=now)


def breaks_of(engine: Engine, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The run's breaks by business key: [{class, status, evidence, ...}]."""
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT * FROM reconciliation_breaks WHERE last_run_id = :id ORDER BY id"""),
            {"id": run_id}).mappings().all()
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["business_key"], []).append(dict(row))
    return out


def clearing(engine: Engine, currency: str = "USD") -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, AccountRef.gateway_clearing("stripe", currency)).posted
