"""Sportsbook products test helpers (issue 15): free bets and bonuses granted through the real
commands, cash-outs and market cancellations through the real commands, the balances of the
new accounts, and the three checks every scenario ends with (ledger check, audit verify,
settlement verify)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Engine

import ledger
from audit.verify import verify as audit_verify
from commands import bets, promotions
from commands import settlement as settlement_commands
from ledger import AccountRef
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from tests.support.factories import ledger_violations
from tests.support.settlement import verify_differences


def grant_free_bet(engine: Engine, player_id: str, amount: int, currency: str = "GBP") -> str:
    grant_id = f"fb_{uuid.uuid4().hex[:10]}"
    run_in_transaction(engine, lambda c: promotions.grant_free_bet(
        c, grant_id=grant_id, player_id=player_id, amount=amount, currency=currency,
        reason="test promotion", actor="operator:test"))
    return grant_id


def credit_bonus(engine: Engine, player_id: str, amount: int, *, multiplier: int = 10,
                 min_odds: Fraction = Fraction(3, 2), currency: str = "GBP",
                 days: int = 30) -> str:
    bonus_id = f"bonus_{uuid.uuid4().hex[:10]}"
    terms = promotions.BonusTerms(amount * multiplier, min_odds,
                                  datetime.now(UTC) + timedelta(days=days))
    run_in_transaction(engine, lambda c: promotions.credit_bonus(
        c, bonus_id=bonus_id, player_id=player_id, amount=amount, currency=currency,
        terms=terms, actor="operator:test"))
    return bonus_id


def bonus_row(engine: Engine, bonus_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = promotions.store.bonus(conn, bonus_id)
    assert row is not None
    return row


def cash_out(engine: Engine, settings: Settings, bet_id: str, value: int, *,
             stake: int | None = None, quote_id: str | None = None,
             expires_in: float = 30.0,
             expires_at: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Cash the bet out through the command (a quote valid `expires_in` seconds from now, or
    until `expires_at`)."""
    request = bets.CashOutRequest(
        quote_id=quote_id or f"q_{uuid.uuid4().hex[:8]}", value=value,
        expires_at=expires_at or datetime.now(UTC) + timedelta(seconds=expires_in), stake=stake)
    return run_in_transaction(engine, lambda c: bets.cash_out(c, settings, bet_id, request,
                                                              actor="system:test"))


def cancel(engine: Engine, settings: Settings, market: str, cancellation_id: str = "c1", *,
           reason_code: str = "4", placed_from: datetime | None = None,
           placed_until: datetime | None = None) -> tuple[dict[str, Any], bool]:
    return run_in_transaction(engine, lambda c: settlement_commands.cancel_market(
        c, settings, market, cancellation_id=cancellation_id, reason_code=reason_code,
        reason="match abandoned", placed_from=placed_from, placed_until=placed_until,
        actor="feed:test"))


def uncancel(engine: Engine, settings: Settings, market: str,
             cancellation_id: str = "c1") -> tuple[dict[str, Any], bool]:
    return run_in_transaction(engine, lambda c: settlement_commands.rollback_cancellation(
        c, settings, market, cancellation_id, actor="feed:test"))


def balances(engine: Engine, player_id: str, currency: str = "GBP") -> dict[str, int]:
    """Every account of the player that issue 15 touches, posted balances."""
    refs = {"cash": AccountRef.player_cash, "in_play": AccountRef.bets_in_play,
            "free_bet": AccountRef.free_bet, "free_in_play": AccountRef.free_bets_in_play,
            "bonus": AccountRef.bonus, "debt": AccountRef.player_debt}
    with engine.connect() as conn:
        return {name: ledger.balance(conn, ref(player_id, currency)).posted
                for name, ref in refs.items()}


def house(engine: Engine, currency: str = "GBP") -> dict[str, int]:
    with engine.connect() as conn:
        return {"revenue": ledger.balance(conn, AccountRef.house_revenue(currency)).posted,
                "promotions": ledger.balance(conn, AccountRef.house_promotions(currency)).posted}


def all_clean(engine: Engine, settings: Settings, *markets: str) -> None:
    """`ledger check`, `audit verify` and `settlement verify` of each market all pass."""
    assert ledger_violations(engine) == []
    with engine.connect() as conn:
        assert audit_verify(conn).problems == []
    for market in markets:
        assert verify_differences(engine, settings, market) == []
