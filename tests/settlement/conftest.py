"""Settlement fixtures: funded players allowed to bet, bets placed through store.bets, a real
worker for the settlement task queue, and helpers that read real outcomes (balances, rows)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from temporalio.worker import Worker

import ledger
from ledger import AccountRef, Transfer
from settlepay import task_queues
from settlepay.config import Settings
from settlepay.db import run_in_transaction, transaction
from store import bets, geolocation, players
from workers import wiring


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_player(engine: Engine, cash: int, currency: str = "GBP") -> str:
    """An active player with `cash` in their account and a valid geolocation check."""
    player_id = uid("ply")
    now = datetime.now(UTC)
    with transaction(engine) as conn:
        players.insert(conn, player_id=player_id, partner_id="partner_t", external_ref=player_id,
                       first_name="Test", last_name="Player", email=None, date_of_birth=None,
                       jurisdiction="US-NJ")
        geolocation.insert(conn, geolocation.GeolocationCheck(
            id=geolocation.new_id(), player_id=player_id, checked_at=now, latitude=40.2, longitude=-74.6,
            ip_address="203.0.113.7", provider="test", jurisdiction="US-NJ", distance_to_border_miles=30.0,
            ip_country="US", ip_subdivision="NJ", anonymous_flags=(), allowed=True, code="allowed",
            reason="test", valid_until=now + timedelta(days=1)))
        if cash:
            assert ledger.post(conn, Transfer(
                key=f"test-fund:{player_id}", kind="deposit", reference=player_id,
                legs=(ledger.Leg(AccountRef.gateway_clearing("test", currency), -cash),
                      ledger.Leg(AccountRef.player_cash(player_id, currency), cash)))).ok
    return player_id


def place(engine: Engine, settings: Settings, player_id: str, stake: int, legs: list[tuple[str, str, str]],
          bet_type: str = "single", currency: str = "GBP", **kw) -> str:
    bet_id = uid("bet")
    req = bets.BetRequest(bet_id=bet_id, player_id=player_id, stake=stake, currency=currency, bet_type=bet_type,
                          legs=tuple(bets.LegRequest(m, s, o) for m, s, o in legs), **kw)
    placed = run_in_transaction(engine, lambda conn: bets.place(conn, settings, req, actor="system:test"))
    assert placed.bet["status"] == "open", placed.bet
    return bet_id


def cash(engine: Engine, player_id: str, currency: str = "GBP") -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, AccountRef.player_cash(player_id, currency)).posted


def account(engine: Engine, ref: AccountRef) -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, ref).posted


def bet_row(engine: Engine, bet_id: str):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM bets WHERE id = :id"), {"id": bet_id}).mappings().one()


def ledger_violations(engine: Engine) -> list[str]:
    from ledger import check
    with engine.connect() as conn:
        return check.run(conn)


@pytest.fixture
def market() -> str:
    return uid("mkt")


@pytest_asyncio.fixture(scope="session")
async def settlement_worker(temporal_env, engine, settings) -> AsyncIterator[Worker]:
    """A real worker polling the settlement task queue, against the session database."""
    workflows, activities = wiring.settlement_queue(engine, settings)
    executor = ThreadPoolExecutor(max_workers=6)
    worker = Worker(temporal_env.client, task_queue=task_queues.SETTLEMENT, workflows=workflows,
                    activities=activities, activity_executor=executor,
                    max_concurrent_activities=6)
    async with worker:
        yield worker
    executor.shutdown()


def settle_inline(engine: Engine, settings: Settings, market: str, version: int, mode: str = "settle",
                  batch_size: int = 3, parts: int = 2, fail: bool = False):
    """What the workflow does, inline: round after round, each part in its own transaction."""
    from store import settlements

    total = settlements.BatchOutcome()
    cursor = ""
    while True:
        with engine.connect() as conn:
            hi = settlements.plan_round(conn, market, cursor, batch_size * parts)
        if hi is None:
            return total
        for part in range(parts):
            out = run_in_transaction(engine, lambda c: settlements.settle_range(
                c, settings, market, version, mode, cursor, hi, part=part, parts=parts,
                actor="system:test", fail_before_commit=fail))
            total.processed += out.processed
            total.posted += out.posted
            total.skipped += out.skipped
        cursor = hi
