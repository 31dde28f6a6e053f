"""Players: creating one (the row, its audit record and its outbox event in one transaction),
and the one builder of the player resource (`player_payload`) that the API answers with and
the outbox event carries (without personal data).

The player id is derived from the request's operation id (its Idempotency-Key) when there is
one, so a request run twice (a retry after its first attempt died mid-flight) finds the player
it already made instead of making a second.
Must never: decide who may see or create a player for which partner (api/auth.py, the route);
open its own transaction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import ledger
import outbox
from ledger import AccountType, statement
from store import players
from store.kyc import kyc_summaries, kyc_summary
from workflows.contracts.refusal import Refusal

# Fields partners already hold and events must not copy around.
PERSONAL_DATA = frozenset({"first_name", "last_name", "email", "date_of_birth"})


@dataclass(frozen=True)
class NewPlayer:
    first_name: str
    last_name: str
    external_ref: str | None = None
    email: str | None = None
    date_of_birth: date | None = None
    jurisdiction: str | None = None


class PlayerExists(Exception):
    """The partner already has a player with this external_ref (`refusal.code` player_exists)."""

    def __init__(self, partner_id: str, external_ref: str | None) -> None:
        self.refusal = Refusal("player_exists", f"Partner {partner_id!r} already has a player "
                                                f"with external_ref {external_ref!r}.")
        super().__init__(self.refusal.reason)


def create_player(conn: Connection, details: NewPlayer, *, partner_id: str, actor: str,
                  operation_id: str | None) -> RowMapping:
    """The new player's row (or the one this very operation made before); PlayerExists when
    the partner's external_ref is taken by another player."""
    player_id = "ply_" + (operation_id or uuid.uuid4().hex)[:24]
    row = players.insert(conn, player_id=player_id, partner_id=partner_id,
                         external_ref=details.external_ref, first_name=details.first_name,
                         last_name=details.last_name, email=details.email,
                         date_of_birth=details.date_of_birth, jurisdiction=details.jurisdiction)
    if row is None:
        earlier = players.get(conn, player_id, partner_id=partner_id)
        if earlier is not None:  # this very operation ran before: its player, not a new one
            return earlier
        raise PlayerExists(partner_id, details.external_ref)
    audit.record(conn, actor=actor, action="player.created", subject_type="player",
                 subject_id=player_id, before=None, after=players.as_record(row))
    outbox.emit(conn, event_type="player.created", aggregate_type="player",
                aggregate_id=player_id, payload=event_payload(player_payload(conn, row)),
                player_id=player_id, partner_id=partner_id)
    return row


# --- the player resource -------------------------------------------------------------------

def player_payload(conn: Connection, player: RowMapping) -> dict[str, Any]:
    """The player resource: the row, balances per currency and the KYC status (JSON values)."""
    return {"object": "player", **players.as_record(player),
            "balances": balances(conn, player["id"]), "kyc": kyc_summary(conn, player["id"])}


def player_payloads(conn: Connection, rows: list[RowMapping]) -> list[dict[str, Any]]:
    """`player_payload` of many players (a page of the players list) in three statements."""
    ids = [row["id"] for row in rows]
    owned = statement.balances_of(conn, [f"player:{player_id}" for player_id in ids])
    kyc = kyc_summaries(conn, ids)
    return [{"object": "player", **players.as_record(row),
             "balances": currency_views(owned[f"player:{row['id']}"]), "kyc": kyc[row["id"]]}
            for row in rows]


def event_payload(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as partner events carry it: identifiers and state, no personal data."""
    return {key: value for key, value in resource.items() if key not in PERSONAL_DATA}


def balances(conn: Connection, player_id: str) -> list[dict[str, int | str]]:
    """The player's money per currency, in minor units (see api/schemas/players.CurrencyBalance)."""
    return currency_views(ledger.balances(conn, f"player:{player_id}"))


def currency_views(owned: list[ledger.Balance]) -> list[dict[str, int | str]]:
    """One player's account balances as the money per currency the player resource shows."""
    by_currency: dict[str, dict[AccountType, ledger.Balance]] = defaultdict(dict)
    for balance in owned:
        by_currency[balance.account.currency][balance.account.type] = balance

    def posted(accounts: dict[AccountType, ledger.Balance], kind: AccountType) -> int:
        return accounts[kind].posted if kind in accounts else 0

    views: list[dict[str, int | str]] = []
    for currency in sorted(by_currency):
        accounts = by_currency[currency]
        cash = accounts.get(AccountType.PLAYER_CASH)
        views.append({
            "currency": currency,
            "cash": cash.posted if cash else 0,
            "held": cash.pending_debits if cash else 0,
            "available": cash.available if cash else 0,
            "pending_withdrawal": posted(accounts, AccountType.PLAYER_PENDING_WITHDRAWAL),
            "bets_in_play": posted(accounts, AccountType.BETS_IN_PLAY),
            # The debt account is debited by what a clawback could not take from cash, so its
            # balance is negative; the view shows the amount owed.
            "debt": -posted(accounts, AccountType.PLAYER_DEBT),
        })
    return views
