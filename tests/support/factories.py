"""Test data and probes the end-to-end tests share: partners with keys, players, funding, and
reads of balances, outbox events and audit actions. Setup writes rows directly (as the
workflows would leave them); every assertion reads the real database or the real API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, text

import ledger
from commands.api_keys import create_api_key
from ledger import AccountRef, Leg, Transfer
from ledger import check as ledger_check
from store import deposits as deposit_store
from store import geolocation, kyc, players
from tests.support.stack import Stack

T = TypeVar("T")


@dataclass
class Player:
    id: str
    partner_id: str
    email: str
    headers: dict[str, str]               # the partner's API key
    operator: dict[str, str]              # an operator key (reviews)


def make_player(engine: Engine, *, first_name: str = "Grace", last_name: str = "Hopper",
                date_of_birth: date | None = date(1990, 5, 17), jurisdiction: str = "US-NJ",
                located: bool = True, purpose: str = "tests") -> Player:
    """A fresh partner (with its key), an operator key, and an active player (located in NJ)."""
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    player_id = f"ply_{uuid.uuid4().hex[:16]}"
    email = f"{player_id}@example.test"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _, plaintext = create_api_key(conn, "partner", partner_id, None, purpose)
        _, operator = create_api_key(conn, "operator", None, None, f"{purpose} operator")
        players.insert(conn, player_id=player_id, partner_id=partner_id, external_ref=None,
                       first_name=first_name, last_name=last_name, email=email,
                       date_of_birth=date_of_birth, jurisdiction=jurisdiction)
        if located:
            geolocation.insert(conn, geolocation.GeolocationCheck(
                id=geolocation.new_id(), player_id=player_id, checked_at=now, latitude=40.2206,
                longitude=-74.7597, ip_address="203.0.113.7", provider="test",
                jurisdiction="US-NJ", distance_to_border_miles=20.0, ip_country="US",
                ip_subdivision="NJ", anonymous_flags=(), allowed=True, code="allowed",
                reason="inside US-NJ", valid_until=now + timedelta(hours=1)))
    return Player(player_id, partner_id, email, {"Authorization": f"Bearer {plaintext}"},
                  {"Authorization": f"Bearer {operator}"})


def mark_kyc_verified(engine: Engine, player: Player) -> None:
    """Test setup only: a verified KYC case, as the KYC workflow leaves it."""
    with engine.begin() as conn:
        kyc.open_case(conn, player.id)
        kyc.transition(conn, player.id, state=kyc.VERIFIED, step="document",
                       detail={"setup": "test"})


def fund(engine: Engine, player: Player, amount: int, currency: str = "USD",
         tag: str = "funding") -> None:
    """Credit the player's cash as a deposit would: gateway clearing -> player cash."""
    with engine.begin() as conn:
        result = ledger.post(conn, Transfer(
            key=f"test-{tag}-{player.id}", kind="deposit", reference=f"test-{tag}",
            legs=(Leg(AccountRef.gateway_clearing("stripe", currency), -amount),
                  Leg(AccountRef.player_cash(player.id, currency), amount))))
        assert result.ok, result


def card_deposit(stack: Stack, player: Player, amount: int, currency: str = "USD") -> str:
    """A real card payment at the Stripe sandbox recorded as a succeeded deposit, and its ledger
    credit: what a refund can go back to. Returns the deposit id."""
    deposit_id = f"dep_test_{uuid.uuid4().hex[:16]}"
    intent = stack.gateway().create_payment_intent(
        amount=amount, currency=currency, payment_method="pm_card_visa",
        idempotency_key=f"{deposit_id}:create")
    assert intent.succeeded, intent
    with stack.engine.begin() as conn:
        deposit_store.insert(conn, deposit_id=deposit_id, player_id=player.id,
                             partner_id=player.partner_id, amount=amount, currency=currency,
                             payment_method="pm_card_visa", created_by="system:test")
        result = ledger.post(conn, Transfer(
            key=f"deposit-{deposit_id}:credit", kind="deposit", reference=deposit_id,
            legs=(Leg(AccountRef.gateway_clearing("stripe", currency), -amount),
                  Leg(AccountRef.player_cash(player.id, currency), amount))))
        assert result.ok
        deposit_store.mark_succeeded(conn, deposit_id, payment_intent=intent.id,
                                     charge=intent.latest_charge,
                                     ledger_transaction_id=result.transaction_id)
    return deposit_id


def balance(engine: Engine, player: Player, currency: str = "USD") -> dict[str, int]:
    with engine.connect() as conn:
        cash = ledger.balance(conn, AccountRef.player_cash(player.id, currency))
        pending = ledger.balance(conn, AccountRef.pending_withdrawal(player.id, currency))
    return {"cash": cash.posted, "held": cash.pending_debits, "available": cash.available,
            "pending_withdrawal": pending.posted,
            "pending_withdrawal_incoming": pending.pending_credits}


def cash(engine: Engine, player_id: str, currency: str = "USD") -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, AccountRef.player_cash(player_id, currency)).posted


def ledger_violations(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return ledger_check.run(conn)


def events(engine: Engine, aggregate_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT event_type FROM outbox_events WHERE aggregate_id = :id ORDER BY id"),
            {"id": aggregate_id}).scalars())


def audit_actions(engine: Engine, subject_id: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT record FROM audit_log WHERE record LIKE :pattern ORDER BY seq"),
            {"pattern": f'%"subject_id":"{subject_id}"%'}).scalars()
        return [json.loads(row)["action"] for row in rows]


async def wait_until(probe: Callable[[], T | Awaitable[T]], timeout: float = 20.0,
                     interval: float = 0.1) -> T:
    """Poll `probe()` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value: Any = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
