"""The player view: the players row plus sections other capabilities contribute.

A section is `(conn, player_row) -> dict of Player fields`. Balances are the first; KYC,
limits and the like append theirs to SECTIONS (and add the matching optional field to
api/schemas/players.Player). Sections only read; they must never write or call out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, RowMapping

import ledger
from api.schemas.players import CurrencyBalance, Player
from ledger import AccountType
from store.kyc import kyc_summary

Section = Callable[[Connection, RowMapping], dict[str, Any]]


def balances_section(conn: Connection, player: RowMapping) -> dict[str, Any]:
    by_currency: dict[str, dict[AccountType, ledger.Balance]] = defaultdict(dict)
    for balance in ledger.balances(conn, f"player:{player['id']}"):
        by_currency[balance.account.currency][balance.account.type] = balance

    def posted(accounts, kind: AccountType) -> int:
        return accounts[kind].posted if kind in accounts else 0

    views = []
    for currency in sorted(by_currency):
        accounts = by_currency[currency]
        cash = accounts.get(AccountType.PLAYER_CASH)
        views.append(CurrencyBalance(
            currency=currency,
            cash=cash.posted if cash else 0,
            held=cash.pending_debits if cash else 0,
            available=cash.available if cash else 0,
            pending_withdrawal=posted(accounts, AccountType.PLAYER_PENDING_WITHDRAWAL),
            bets_in_play=posted(accounts, AccountType.BETS_IN_PLAY),
            # The debt account is debited by what a clawback could not take from cash, so its
            # balance is negative; the view shows the amount owed.
            debt=-posted(accounts, AccountType.PLAYER_DEBT),
        ))
    return {"balances": views}


SECTIONS: list[Section] = [
    balances_section,
    lambda conn, player: {"kyc": kyc_summary(conn, player["id"])},   # store/kyc.py
]


def player_view(conn: Connection, player: RowMapping) -> Player:
    fields: dict[str, Any] = dict(player)
    for section in SECTIONS:
        fields.update(section(conn, player))
    return Player.model_validate(fields)
