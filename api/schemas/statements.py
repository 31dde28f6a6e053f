"""Response bodies of a player's statement: /v1/players/{id}/transactions (and its CSV export)
and /v1/players/{id}/balances.

A `PlayerTransaction` is one movement of one of the player's accounts by one ledger transaction
(ledger/statement.py). Amounts are integers in minor units. For the `debt` account amounts and
balances are what the player owes (the ledger keeps debt as a negative balance): a clawback
cash could not cover shows as a positive `amount` on `debt`, a repayment as a negative one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.lists import ListPage
from api.schemas.players import CurrencyBalance

StatementAccount = Literal["cash", "pending_withdrawal", "bets_in_play", "debt"]

KINDS = ("deposit: a deposit credited; bet_stake: a stake taken; settlement: a bet settled "
         "(its payout to cash, the stake out of bets in play); resettlement: the delta of a "
         "corrected result (corrects_ledger_transaction_id names the settlement it corrects); "
         "settlement_rollback: a settlement reversed; hold / hold_void / hold_post: a "
         "withdrawal's cash reserved, released, or taken; withdrawal: a withdrawal paid out of "
         "pending withdrawal (refunds to cards and payouts alike); debt_repayment: debt repaid "
         "from cash.")


class PlayerTransaction(BaseModel):
    object: Literal["player_transaction"] = "player_transaction"
    id: str = Field(description="The line's id (a cursor for starting_after / ending_before).",
                    examples=["ptx_1234_56"])
    player_id: str
    created_at: datetime = Field(description="When the ledger transaction was made.")
    kind: str = Field(description="The ledger transaction's kind. " + KINDS,
                      examples=["deposit"])
    account: StatementAccount = Field(description="The player's account this line moves.")
    currency: str
    amount: int = Field(description="Change of the account's balance, minor units "
                                    "(0 for a hold taken or released).")
    balance: int = Field(description="The account's balance after this line (running balance).")
    held_change: int = Field(description="Change of the cash reserved by withdrawal holds.")
    held: int | None = Field(description="Cash reserved by holds after this line (cash only).")
    available: int | None = Field(description="balance - held after this line (cash only).")
    reference: str | None = Field(description="The business object: a deposit, bet or "
                                              "withdrawal id.")
    ledger_transaction_id: int
    ledger_key: str = Field(description="The ledger transaction's idempotency key.")
    corrects_ledger_transaction_id: int | None = Field(
        description="Resettlement: the ledger transaction this one corrects.")
    hold_ledger_transaction_id: int | None = Field(
        description="hold_post / hold_void: the hold they resolve.")
    metadata: dict[str, Any] = Field(description="The ledger transaction's metadata (e.g. a "
                                                 "settlement's market and result version).")


class PlayerTransactionList(ListPage[PlayerTransaction]):
    """A page of a player's statement, newest first."""


class PlayerBalances(BaseModel):
    object: Literal["player_balances"] = "player_balances"
    player_id: str
    at: datetime = Field(description="The moment the balances are reconstructed for.")
    balances: list[CurrencyBalance]


CSV_COLUMNS = ("id", "created_at", "kind", "account", "currency", "amount", "balance",
               "held_change", "held", "available", "reference", "ledger_transaction_id",
               "ledger_key", "corrects_ledger_transaction_id", "hold_ledger_transaction_id")
