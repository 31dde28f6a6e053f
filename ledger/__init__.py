"""The double-entry ledger: the only code that moves money.

Public API (all functions take an open SQLAlchemy `Connection` inside a transaction, so the
caller commits the posting together with its own state row, audit record and outbox event):

    post(conn, transfer)              -> PostResult   one balanced transaction
    post_now(engine, transfer)        -> PostResult   the same as a transaction of its own,
                                                      in one round trip
    GroupPoster(engine).post(transfer) -> PostResult  the same, committed together with whatever
                                                      other threads of the process post meanwhile
    post_many(conn, transfers)        -> list[PostResult]   set-based batch (settlement)
    hold(conn, key, debit, credit, amount, reference=None)  -> PostResult  two-phase: pending
    post_hold(conn, key, hold_key, amount=None)              -> PostResult  post all or part
    void_hold(conn, key, hold_key)                           -> PostResult  release it
    hold_state(conn, hold_key)                               -> pending | posted | voided | None
    balance(conn, account) / balances(conn, owner)           -> Balance / list[Balance]

Invariants (checked by `settlepay ledger check`, see ledger/check.py):
  1. every transaction's entries sum to zero per currency and it has >= 2 entries (or none,
     when it was rejected);
  2. every balance row equals the sum of its entries, and its last entry carries that balance;
  3. no player cash (or other no-negative account) has a negative available balance;
  4. pending debits/credits equal the open holds.
"""

from ledger.group_commit import GroupPoster
from ledger.postings import (
    balance,
    balances,
    hold,
    hold_state,
    post,
    post_hold,
    post_many,
    post_now,
    void_hold,
)
from ledger.types import (
    AccountRef,
    AccountType,
    Balance,
    IdempotencyConflict,
    InvalidTransfer,
    LedgerError,
    Leg,
    PostResult,
    ResultCode,
    Transfer,
)

__all__ = [
    "AccountRef", "AccountType", "Balance", "GroupPoster", "IdempotencyConflict",
    "InvalidTransfer", "Leg", "LedgerError", "PostResult", "ResultCode", "Transfer",
    "balance", "balances", "hold", "hold_state", "post", "post_hold", "post_many", "post_now",
    "void_hold",
]
