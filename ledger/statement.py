"""Reading a player's money history out of the ledger: statement lines, balances at a moment,
current balances of many players. Reads only.

A **line** is one movement of one of the player's accounts (cash, pending withdrawal, bets in
play, debt; per currency) by one ledger transaction:

* a transaction's entry on the account (deposit, bet stake, settlement payout, resettlement
  delta with the transaction it corrects, rollback, hold post, withdrawal clearing, debt
  repayment, a shortfall moved to debt): `amount` is the change of the account's posted
  balance and `balance` the posted balance after it (the entry's own `balance_after`: player
  accounts have one balance row);
* a hold taken on the account (`kind` hold: `held_change` > 0, `amount` 0), and a hold
  released with nothing posted (hold_void, or a hold_post of 0: `held_change` < 0). A hold
  posted with an amount is the entry line of its hold_post transaction (`amount` < 0 and
  `held_change` < 0 on cash).

Lines are ordered by (ledger transaction id, account id). Transaction ids follow the order in
which postings took an account's balance-row lock (every posting function locks before it
inserts its transaction row), so along each account this is exactly the order of its running
balance. `held` (cash only) is what open holds reserve after the line: the holds taken at or
before it and resolved after it.

Balances **at a moment** are sums over the entries (and holds) of transactions stamped at or
before it: a transaction's time is when its database transaction began (`now()` in the posting
function), the same stamp the statement lines show.
Must never: write anything; be asked for hot accounts (their balance is a sum of rows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from ledger.types import AccountRef, AccountType, Balance

PLAYER_ACCOUNTS = (AccountType.PLAYER_CASH, AccountType.PLAYER_PENDING_WITHDRAWAL,
                   AccountType.BETS_IN_PLAY, AccountType.PLAYER_DEBT)
NO_BOUND = 9_223_372_036_854_775_807   # bigint max: "no cursor"


@dataclass(frozen=True, order=True)
class Position:
    """Where a line sits in a statement: (ledger transaction id, account id)."""

    transaction_id: int
    account_id: int


@dataclass(frozen=True)
class Line:
    position: Position
    account: AccountRef
    kind: str                     # the transaction's ledger kind (deposit, bet_stake, hold, ...)
    created_at: datetime          # the transaction's time
    amount: int                   # change of the account's posted balance
    balance: int                  # the account's posted balance after the line
    held_change: int              # change of what holds reserve on the account
    held: int                     # what holds reserve after the line (cash accounts)
    reference: str | None         # the business object (deposit, bet, withdrawal id)
    ledger_key: str               # the transaction's idempotency key
    corrects_transaction_id: int | None   # resettlement: the transaction it corrects
    hold_transaction_id: int | None       # hold post / void: the hold
    metadata: dict[str, Any]

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class StatementQuery:
    owner: str                                # player:<id>
    limit: int
    after: Position | None = None             # lines before this one (older), newest first
    before: Position | None = None            # lines after this one (newer), oldest first
    currency: str | None = None
    created_gt: datetime | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    created_lte: datetime | None = None

    @property
    def ascending(self) -> bool:
        return self.before is not None


@dataclass(frozen=True)
class BalanceAt:
    account: AccountRef
    posted: int
    held: int


# Lines of one direction, at most :limit per kind of movement and account; the caller orders
# and cuts. :bound is the cursor's transaction id, shifted so that the cursor's own
# transaction is included for the accounts on the right side of the cursor's account id.
_LINES = """
WITH acct AS MATERIALIZED (
    SELECT id, owner, type, currency FROM ledger_accounts
     WHERE owner = :owner AND type = ANY(:types)
       AND (CAST(:currency AS text) IS NULL OR currency = CAST(:currency AS text))
), moves AS (
    SELECT m.* FROM acct a CROSS JOIN LATERAL (
        SELECT e.transaction_id AS tx_id, e.account_id, e.amount, e.balance_after AS balance,
               0::bigint AS held_change
          FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE e.account_id = a.id AND e.transaction_id {cmp} :tx + {shift}
               {created}
         ORDER BY e.transaction_id {order} LIMIT :limit) m
    UNION ALL
    SELECT m.* FROM acct a CROSS JOIN LATERAL (
        SELECT h.transaction_id AS tx_id, h.debit_account_id AS account_id, 0::bigint AS amount,
               NULL::bigint AS balance, h.amount AS held_change
          FROM ledger_holds h JOIN ledger_transactions t ON t.id = h.transaction_id
         WHERE h.debit_account_id = a.id AND h.transaction_id {cmp} :tx + {shift}
               {created}
         ORDER BY h.transaction_id {order} LIMIT :limit) m
    UNION ALL
    SELECT h.resolved_by, h.debit_account_id, 0::bigint, NULL::bigint, -h.amount
      FROM acct a JOIN ledger_holds h ON h.debit_account_id = a.id
      JOIN ledger_transactions t ON t.id = h.resolved_by
     WHERE (h.state = 'voided' OR h.posted_amount = 0) AND h.resolved_by {cmp} :tx + {shift}
           {created}
), page AS (
    SELECT * FROM moves ORDER BY tx_id {order}, account_id {order} LIMIT :limit
)
SELECT p.tx_id, p.account_id, a.type, a.currency, t.kind, t.created_at, p.amount,
       coalesce(p.balance, (SELECT e.balance_after FROM ledger_entries e
                             WHERE e.account_id = p.account_id AND e.transaction_id < p.tx_id
                             ORDER BY e.transaction_id DESC LIMIT 1), 0) AS balance,
       CASE WHEN t.kind = 'hold_post' AND p.balance IS NOT NULL
            THEN -coalesce((SELECT h.amount FROM ledger_holds h
                             WHERE h.transaction_id = t.hold_id
                               AND h.debit_account_id = p.account_id), 0)
            ELSE p.held_change END AS held_change,
       CASE WHEN a.type = 'player_cash'
            THEN (SELECT coalesce(sum(h.amount), 0) FROM ledger_holds h
                   WHERE h.debit_account_id = p.account_id AND h.transaction_id <= p.tx_id
                     AND (h.resolved_by IS NULL OR h.resolved_by > p.tx_id))
            ELSE 0 END AS held,
       coalesce(t.reference, ht.reference) AS reference, t.idempotency_key, t.corrects_id,
       t.hold_id, t.metadata
  FROM page p
  JOIN acct a ON a.id = p.account_id
  JOIN ledger_transactions t ON t.id = p.tx_id
  LEFT JOIN ledger_transactions ht ON ht.id = t.hold_id
 ORDER BY p.tx_id {order}, p.account_id {order}
"""


def _line(owner: str, row: Any) -> Line:
    return Line(
        position=Position(int(row.tx_id), int(row.account_id)),
        account=AccountRef(owner, AccountType(row.type), row.currency.strip()),
        kind=row.kind, created_at=row.created_at, amount=int(row.amount),
        balance=int(row.balance), held_change=int(row.held_change), held=int(row.held),
        reference=row.reference, ledger_key=row.idempotency_key,
        corrects_transaction_id=row.corrects_id, hold_transaction_id=row.hold_id,
        metadata=dict(row.metadata or {}))


def lines(conn: Connection, query: StatementQuery) -> list[Line]:
    """Up to `query.limit` lines, newest first from `after` (or the newest), or oldest first
    from `before`."""
    cursor = query.before if query.ascending else query.after
    if cursor is None:
        shift = "0"
    elif query.ascending:   # (tx, account) > (T, A): tx > T, or tx = T on an account above A
        shift = "(CASE WHEN a.id > :account THEN -1 ELSE 0 END)"
    else:                   # (tx, account) < (T, A): tx < T, or tx = T on an account below A
        shift = "(CASE WHEN a.id < :account THEN 1 ELSE 0 END)"
    params: dict[str, Any] = {
        "owner": query.owner, "types": [str(t) for t in PLAYER_ACCOUNTS],
        "currency": query.currency, "limit": query.limit,
        "tx": cursor.transaction_id if cursor else (0 if query.ascending else NO_BOUND),
        "account": cursor.account_id if cursor else 0,
    }
    created = []
    for bound, operator in (("created_gt", ">"), ("created_gte", ">="), ("created_lt", "<"),
                            ("created_lte", "<=")):
        if getattr(query, bound) is not None:
            created.append(f"AND t.created_at {operator} :{bound}")
            params[bound] = getattr(query, bound)
    sql = _LINES.format(cmp=">" if query.ascending else "<",
                        order="ASC" if query.ascending else "DESC", shift=shift,
                        created=" ".join(created))
    return [_line(query.owner, row) for row in conn.execute(text(sql), params)]


def iterate(conn: Connection, owner: str, *, currency: str | None = None,
            created_gte: datetime | None = None, created_lt: datetime | None = None,
            batch: int = 1000) -> Iterator[Line]:
    """Every line of a period, oldest first, read in batches (a CSV export)."""
    position = Position(0, 0)
    while True:
        chunk = lines(conn, StatementQuery(owner=owner, limit=batch, before=position,
                                           currency=currency, created_gte=created_gte,
                                           created_lt=created_lt))
        yield from chunk
        if len(chunk) < batch:
            return
        position = chunk[-1].position


def transaction_exists_for(conn: Connection, owner: str, position: Position) -> bool:
    """Whether a position names a line of this owner's statement (a cursor's check)."""
    return conn.execute(text("""
        SELECT 1 FROM ledger_accounts a
         WHERE a.id = :account AND a.owner = :owner AND a.type = ANY(:types)
           AND (EXISTS (SELECT 1 FROM ledger_entries e
                         WHERE e.account_id = a.id AND e.transaction_id = :tx)
                OR EXISTS (SELECT 1 FROM ledger_holds h
                            WHERE h.debit_account_id = a.id
                              AND (h.transaction_id = :tx OR h.resolved_by = :tx)))"""),
        {"account": position.account_id, "owner": owner, "tx": position.transaction_id,
         "types": [str(t) for t in PLAYER_ACCOUNTS]}).first() is not None


def balances_at(conn: Connection, owner: str, at: datetime) -> list[BalanceAt]:
    """The owner's accounts as they stood at `at`: posted = the sum of the entries of
    transactions stamped at or before it; held = holds taken by then and not yet resolved."""
    rows = conn.execute(text("""
        SELECT a.type, a.currency,
               coalesce((SELECT sum(e.amount) FROM ledger_entries e
                           JOIN ledger_transactions t ON t.id = e.transaction_id
                          WHERE e.account_id = a.id AND t.created_at <= :at), 0) AS posted,
               coalesce((SELECT sum(h.amount) FROM ledger_holds h
                           JOIN ledger_transactions ht ON ht.id = h.transaction_id
                           LEFT JOIN ledger_transactions rt ON rt.id = h.resolved_by
                          WHERE h.debit_account_id = a.id AND ht.created_at <= :at
                            AND (rt.id IS NULL OR rt.created_at > :at)), 0) AS held
          FROM ledger_accounts a
         WHERE a.owner = :owner AND a.type = ANY(:types) AND a.created_at <= :at
         ORDER BY a.currency, a.type"""),
        {"owner": owner, "at": at, "types": [str(t) for t in PLAYER_ACCOUNTS]})
    return [BalanceAt(AccountRef(owner, AccountType(row.type), row.currency.strip()),
                      int(row.posted), int(row.held)) for row in rows]


def balances_of(conn: Connection, owners: Sequence[str]) -> dict[str, list[Balance]]:
    """Current balances of many owners in one statement (a page of the players list)."""
    found: dict[str, list[Balance]] = {owner: [] for owner in owners}
    rows = conn.execute(text("""
        SELECT a.owner, a.type, a.currency, sum(b.posted) AS posted,
               sum(b.pending_debits) AS pending_debits, sum(b.pending_credits) AS pending_credits
          FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
         WHERE a.owner = ANY(:owners)
         GROUP BY a.id ORDER BY a.owner, a.currency, a.type"""), {"owners": list(owners)})
    for row in rows:
        found[row.owner].append(Balance(
            AccountRef(row.owner, AccountType(row.type), row.currency.strip()),
            int(row.posted), int(row.pending_debits), int(row.pending_credits)))
    return found
