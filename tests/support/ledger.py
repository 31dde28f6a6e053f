"""Small builders for ledger tests: unique owners, deposits, bets, house payouts."""

from __future__ import annotations

import uuid

from ledger import AccountRef, Leg, Transfer


def new_player() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def deposit(player: str, amount: int, key: str | None = None, currency: str = "USD") -> Transfer:
    return Transfer(key or f"dep-{uuid.uuid4().hex}", "deposit", (
        Leg(AccountRef.gateway_clearing("stripe", currency), -amount),
        Leg(AccountRef.player_cash(player, currency), amount),
    ))


def stake(player: str, amount: int, key: str | None = None, currency: str = "USD") -> Transfer:
    return Transfer(key or f"stake-{uuid.uuid4().hex}", "bet_stake", (
        Leg(AccountRef.player_cash(player, currency), -amount),
        Leg(AccountRef.bets_in_play(player, currency), amount),
    ))


def house_pays(player: str, amount: int, key: str, currency: str = "USD") -> Transfer:
    return Transfer(key, "settlement", (
        Leg(AccountRef.house_revenue(currency), -amount),
        Leg(AccountRef.player_cash(player, currency), amount),
    ))
