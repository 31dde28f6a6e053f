"""`settlepay ledger check`: the ledger's invariants, each stated in words and checked in SQL.

Each check is a query that returns the rows that break its invariant; an empty result means
the invariant holds. `run(conn)` returns one line per violation (empty list: all hold).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# (invariant in words, query returning offending rows as text)
CHECKS: list[tuple[str, str]] = [
    ("every transaction's entries sum to zero in each currency",
     """SELECT 'transaction ' || transaction_id || ' ' || currency || ' sums to ' || sum(amount)
          FROM ledger_entries GROUP BY transaction_id, currency HAVING sum(amount) <> 0"""),
    ("every accepted posting has at least two entries; a rejected one has none",
     """SELECT 'transaction ' || t.id || ' (' || t.kind || ', ' || t.result || ') has ' || count(e.id) || ' entries'
          FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
         GROUP BY t.id
        HAVING (t.result <> 'ok' AND count(e.id) > 0)
            OR (t.result = 'ok' AND t.kind NOT IN ('hold', 'hold_post', 'hold_void') AND count(e.id) < 2)
            OR (t.kind IN ('hold', 'hold_void') AND count(e.id) > 0)"""),
    ("every balance row equals the sum of its entries",
     """SELECT 'account ' || b.account_id || ' row ' || b.shard || ': balance ' || b.posted
               || ' but entries sum to ' || coalesce(s.total, 0)
          FROM ledger_balances b
          LEFT JOIN (SELECT account_id, shard, sum(amount) AS total FROM ledger_entries GROUP BY 1, 2) s
                 ON s.account_id = b.account_id AND s.shard = b.shard
         WHERE b.posted <> coalesce(s.total, 0)"""),
    ("every entry carries its balance row's running balance",
     """SELECT 'entry ' || id || ': balance_after ' || balance_after || ' but running sum is ' || running
          FROM (SELECT id, balance_after,
                       sum(amount) OVER (PARTITION BY account_id, shard ORDER BY id) AS running
                  FROM ledger_entries) r
         WHERE balance_after <> running"""),
    ("no player cash (or other no-negative account) has a negative available balance",
     """SELECT a.owner || ' ' || a.type || ' ' || a.currency || ': available ' || sum(b.posted - b.pending_debits)
          FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
         WHERE a.no_negative GROUP BY a.id HAVING sum(b.posted - b.pending_debits) < 0"""),
    ("pending debits and credits equal the open holds",
     """SELECT 'account ' || a.id || ': pending debits ' || b.pending_debits || '/' || coalesce(d.total, 0)
               || ', pending credits ' || b.pending_credits || '/' || coalesce(c.total, 0)
          FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id AND b.shard = 0
          LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total FROM ledger_holds
                      WHERE state = 'pending' GROUP BY 1) d ON d.id = a.id
          LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total FROM ledger_holds
                      WHERE state = 'pending' GROUP BY 1) c ON c.id = a.id
         WHERE b.pending_debits <> coalesce(d.total, 0) OR b.pending_credits <> coalesce(c.total, 0)"""),
    ("every hold is resolved at most once",
     """SELECT 'hold ' || hold_id || ' resolved ' || count(*) || ' times'
          FROM ledger_transactions WHERE kind IN ('hold_post', 'hold_void') AND result = 'ok'
         GROUP BY hold_id HAVING count(*) > 1"""),
    ("the whole ledger sums to zero in each currency",
     """SELECT currency || ' sums to ' || sum(amount) FROM ledger_entries
         GROUP BY currency HAVING sum(amount) <> 0"""),
]

INVARIANTS: list[str] = [words for words, _ in CHECKS]


def run(conn: Connection, limit: int = 20) -> list[str]:
    """All violations, at most `limit` per invariant, each prefixed by the invariant."""
    violations: list[str] = []
    for words, query in CHECKS:
        for (row,) in conn.execute(text(f"SELECT * FROM ({query}) v LIMIT {limit}")):
            violations.append(f"{words}: {row}")
    return violations
