"""`settlepay ledger check`: the ledger's invariants, each stated in words and checked in SQL.

Each check is a query that returns the rows that break its invariant; an empty result means
the invariant holds. `run(conn)` returns one line per violation (empty list: all hold).

The model they check (ledger/sql/schema.sql): an account has `shards` balance rows (one, or
several for a hot account); entries are append-only, each on one balance row with that row's
balance after it; `posted` of a row is the sum of its entries; an open hold reserves its amount
as pending debits on its debit account's row and pending credits on its credit account's row
until one accepted `hold_post` or `hold_void` transaction resolves it. Double entry then means:
every transaction, and so every currency over all entries and over all balance rows (every row
of a split hot account counted), sums to zero.

This module must never write: it reads one snapshot (the caller's transaction) and reports.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# (invariant in words, query returning offending rows as text)
CHECKS: list[tuple[str, str]] = [
    # Transactions.
    ("every transaction's entries sum to zero in each currency",
     """SELECT 'transaction ' || transaction_id || ' ' || currency || ' sums to ' || sum(amount)
          FROM ledger_entries GROUP BY transaction_id, currency HAVING sum(amount) <> 0"""),
    ("every accepted posting has at least two entries; a rejected one has none",
     """SELECT 'transaction ' || t.id || ' (' || t.kind || ', ' || t.result || ') has '
               || count(e.id) || ' entries'
          FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
         GROUP BY t.id
        HAVING (t.result <> 'ok' AND count(e.id) > 0)
            OR (t.result = 'ok' AND t.kind NOT IN ('hold', 'hold_post', 'hold_void')
                AND count(e.id) < 2)
            OR (t.kind IN ('hold', 'hold_void') AND count(e.id) > 0)"""),

    # Entries and balance rows.
    ("every account has one balance row per shard, numbered 0 to shards - 1",
     """SELECT 'account ' || a.id || ' (' || a.shards || ' shards) has balance rows '
               || coalesce(string_agg(b.shard::text, ',' ORDER BY b.shard), 'none')
          FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account_id = a.id
         GROUP BY a.id
        HAVING count(b.shard) <> a.shards OR min(b.shard) <> 0 OR max(b.shard) <> a.shards - 1"""),
    ("every entry is on a balance row that exists",
     """SELECT 'entry ' || e.id || ' (transaction ' || e.transaction_id || ') is on account '
               || e.account_id || ' row ' || e.shard || ', which does not exist'
          FROM ledger_entries e
         WHERE NOT EXISTS (SELECT 1 FROM ledger_balances b
                            WHERE b.account_id = e.account_id AND b.shard = e.shard)"""),
    ("every entry belongs to a transaction that exists",
     """SELECT 'entry ' || e.id || ' names transaction ' || e.transaction_id
               || ', which does not exist'
          FROM ledger_entries e
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = e.transaction_id)"""),
    ("every entry's transaction is guarded by the database: the foreign key, or the statement "
     "trigger that checks it with transactions that cannot be truncated (0024)",
     """SELECT 'ledger_entries: no foreign key to ledger_transactions and the guard triggers '
               || 'are missing or not firing'
         WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c
                            WHERE c.conrelid = to_regclass('ledger_entries') AND c.contype = 'f'
                              AND c.confrelid = to_regclass('ledger_transactions'))
           AND (SELECT count(*) FROM pg_trigger g
                 WHERE (g.tgrelid, g.tgname) IN (
                           (to_regclass('ledger_entries'), 'ledger_entries_transaction_exists'),
                           (to_regclass('ledger_transactions'),
                            'ledger_transactions_no_truncate'))
                   AND g.tgenabled IN ('O', 'A')) <> 2"""),
    ("every correction and hold reference of a transaction names a transaction that exists",
     """SELECT 'transaction ' || t.id || ' names ' || r.name || ' ' || r.id
               || ', which does not exist'
          FROM ledger_transactions t
          CROSS JOIN LATERAL (VALUES ('corrects_id', t.corrects_id),
                                     ('hold_id', t.hold_id)) AS r(name, id)
         WHERE r.id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM ledger_transactions x WHERE x.id = r.id)"""),
    ("a transaction's correction and hold references are guarded by the database: the foreign "
     "keys, or the row trigger that checks the rows that set one (0026)",
     """SELECT 'ledger_transactions: no foreign keys on corrects_id and hold_id and the guard '
               || 'trigger is missing or not firing'
         WHERE (SELECT count(*) FROM pg_constraint c
                 WHERE c.conrelid = to_regclass('ledger_transactions') AND c.contype = 'f'
                   AND c.confrelid = to_regclass('ledger_transactions')) < 2
           AND NOT EXISTS (SELECT 1 FROM pg_trigger g
                            WHERE g.tgrelid = to_regclass('ledger_transactions')
                              AND g.tgname = 'ledger_transactions_reference_exists'
                              AND g.tgenabled IN ('O', 'A'))"""),
    ("every entry is in its account's currency",
     """SELECT 'entry ' || e.id || ' is in ' || e.currency || ' on account ' || a.id
               || ' in ' || a.currency
          FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
         WHERE e.currency <> a.currency"""),
    ("every balance row equals the sum of its entries",
     """SELECT 'account ' || b.account_id || ' row ' || b.shard || ': balance ' || b.posted
               || ' but entries sum to ' || coalesce(s.total, 0)
          FROM ledger_balances b
          LEFT JOIN (SELECT account_id, shard, sum(amount) AS total
                       FROM ledger_entries GROUP BY 1, 2) s
                 ON s.account_id = b.account_id AND s.shard = b.shard
         WHERE b.posted <> coalesce(s.total, 0)"""),

    # History: the entries of a balance row tell how its balance came about, one step each.
    ("every entry carries its balance row's running balance",
     """SELECT 'entry ' || id || ': balance_after ' || balance_after
               || ' but running sum is ' || running
          FROM (SELECT id, balance_after,
                       sum(amount) OVER (PARTITION BY account_id, shard ORDER BY id) AS running
                  FROM ledger_entries) r
         WHERE balance_after <> running"""),
    ("every balance row's latest entry carries the row's balance",
     """SELECT 'account ' || b.account_id || ' row ' || b.shard || ': balance ' || b.posted
               || ' but its latest entry ' || l.id || ' says ' || l.balance_after
          FROM ledger_balances b
          JOIN (SELECT DISTINCT ON (account_id, shard) account_id, shard, id, balance_after
                  FROM ledger_entries ORDER BY account_id, shard, id DESC) l
            ON l.account_id = b.account_id AND l.shard = b.shard
         WHERE l.balance_after <> b.posted"""),
    ("the append-only guards of entries and transactions are in place",
     """SELECT 'table ' || t.name || ': append-only trigger '
               || CASE WHEN g.oid IS NULL THEN 'missing' ELSE 'not firing' END
          FROM (VALUES ('ledger_entries'), ('ledger_transactions')) AS t(name)
          LEFT JOIN pg_trigger g
                 ON g.tgrelid = to_regclass(t.name) AND g.tgname = t.name || '_append_only'
         WHERE g.oid IS NULL OR g.tgenabled NOT IN ('O', 'A')"""),

    # Funds.
    ("no player cash (or other no-negative account) has a negative available balance",
     """SELECT a.owner || ' ' || a.type || ' ' || a.currency || ': available '
               || sum(b.posted - b.pending_debits)
          FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
         WHERE a.no_negative GROUP BY a.id HAVING sum(b.posted - b.pending_debits) < 0"""),

    # Holds.
    ("pending debits and credits equal the open holds",
     """SELECT 'account ' || p.account_id || ': pending debits ' || p.debits || '/'
               || coalesce(d.total, 0) || ', pending credits ' || p.credits || '/'
               || coalesce(c.total, 0)
          FROM (SELECT account_id, sum(pending_debits) AS debits,
                       sum(pending_credits) AS credits
                  FROM ledger_balances GROUP BY 1) p
          LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total FROM ledger_holds
                      WHERE state = 'pending' GROUP BY 1) d ON d.id = p.account_id
          LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total FROM ledger_holds
                      WHERE state = 'pending' GROUP BY 1) c ON c.id = p.account_id
         WHERE p.debits <> coalesce(d.total, 0) OR p.credits <> coalesce(c.total, 0)"""),
    ("every accepted hold has one hold row, between two single-row accounts of its currency",
     """SELECT 'transaction ' || t.id || ' (hold, ok) has no hold row'
          FROM ledger_transactions t
         WHERE t.kind = 'hold' AND t.result = 'ok'
           AND NOT EXISTS (SELECT 1 FROM ledger_holds h WHERE h.transaction_id = t.id)
        UNION ALL
        SELECT 'hold ' || h.transaction_id || ' belongs to a ' || t.kind || ' transaction ('
               || t.result || ')'
          FROM ledger_holds h JOIN ledger_transactions t ON t.id = h.transaction_id
         WHERE t.kind <> 'hold' OR t.result <> 'ok'
        UNION ALL
        SELECT 'hold ' || h.transaction_id || ' in ' || h.currency || ' is from account '
               || d.id || ' (' || d.currency || ', ' || d.shards || ' rows) to account '
               || c.id || ' (' || c.currency || ', ' || c.shards || ' rows)'
          FROM ledger_holds h
          JOIN ledger_accounts d ON d.id = h.debit_account_id
          JOIN ledger_accounts c ON c.id = h.credit_account_id
         WHERE d.id = c.id OR d.currency <> h.currency OR c.currency <> h.currency
            OR d.shards <> 1 OR c.shards <> 1"""),
    ("every hold is resolved at most once",
     """SELECT 'hold ' || hold_id || ' resolved ' || count(*) || ' times'
          FROM ledger_transactions WHERE kind IN ('hold_post', 'hold_void') AND result = 'ok'
         GROUP BY hold_id HAVING count(*) > 1"""),
    ("a hold's state is its resolution: pending until one accepted post or void of it, "
     "which it names; a voided hold posted nothing",
     """SELECT 'hold ' || h.transaction_id || ' is ' || h.state || ' (posted amount '
               || coalesce(h.posted_amount::text, 'none') || ') but resolved by '
               || coalesce(r.kind || ' ' || r.id || ' (' || r.result || ')', 'nothing')
          FROM ledger_holds h LEFT JOIN ledger_transactions r ON r.id = h.resolved_by
         WHERE (h.state = 'pending'
                AND (h.resolved_by IS NOT NULL OR h.posted_amount IS NOT NULL))
            OR (h.state <> 'pending'
                AND (r.id IS NULL OR r.result <> 'ok' OR r.hold_id <> h.transaction_id
                     OR r.kind <> CASE h.state WHEN 'posted' THEN 'hold_post' ELSE 'hold_void' END
                     OR h.posted_amount IS NULL))
            OR (h.state = 'voided' AND h.posted_amount <> 0)
        UNION ALL
        SELECT 'transaction ' || t.id || ' (' || t.kind || ', ok) resolves '
               || coalesce('hold ' || h.transaction_id || ', which is ' || h.state
                           || coalesce(' by ' || h.resolved_by, ''), 'no hold')
          FROM ledger_transactions t LEFT JOIN ledger_holds h ON h.transaction_id = t.hold_id
         WHERE t.kind IN ('hold_post', 'hold_void') AND t.result = 'ok'
           AND h.resolved_by IS DISTINCT FROM t.id"""),
    ("a posted hold moves exactly its posted amount from its debit to its credit account",
     """SELECT 'hold ' || h.transaction_id || ' posted ' || h.posted_amount || ': its posting '
               || coalesce(h.resolved_by::text, 'none') || ' took '
               || coalesce(-sum(e.amount) FILTER (WHERE e.account_id = h.debit_account_id), 0)
               || ' from the debit account, gave '
               || coalesce(sum(e.amount) FILTER (WHERE e.account_id = h.credit_account_id), 0)
               || ' to the credit account and moved '
               || count(e.id) FILTER (WHERE e.account_id NOT IN (h.debit_account_id,
                                                                 h.credit_account_id))
               || ' other entries'
          FROM ledger_holds h LEFT JOIN ledger_entries e ON e.transaction_id = h.resolved_by
         WHERE h.state = 'posted'
         GROUP BY h.transaction_id
        HAVING coalesce(-sum(e.amount) FILTER (WHERE e.account_id = h.debit_account_id), 0)
                   <> h.posted_amount
            OR coalesce(sum(e.amount) FILTER (WHERE e.account_id = h.credit_account_id), 0)
                   <> h.posted_amount
            OR count(e.id) FILTER (WHERE e.account_id NOT IN (h.debit_account_id,
                                                              h.credit_account_id)) > 0"""),

    # Free bets and bonus funds (issue 15): the house's promises, kept apart from cash.
    ("free-bet and bonus accounts are players' single-row no-negative accounts; house "
     "promotions is the house's",
     """SELECT 'account ' || a.id || ' (' || a.owner || ' ' || a.type || ') has '
               || a.shards || ' rows, no_negative ' || a.no_negative
          FROM ledger_accounts a
         WHERE (a.type IN ('player_free_bet', 'free_bets_in_play', 'player_bonus')
                AND (a.owner NOT LIKE 'player:%' OR a.shards <> 1 OR NOT a.no_negative))
            OR (a.type = 'house_promotions' AND (a.owner <> 'house' OR a.no_negative))"""),
    ("free-bet and bonus accounts move only in the postings that may touch them",
     """SELECT 'transaction ' || t.id || ' (' || t.kind || ') moves ' || a.type
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE (a.type = 'player_free_bet' AND t.kind NOT IN (
                    'free_bet_grant', 'bet_stake', 'settlement', 'resettlement',
                    'settlement_rollback', 'bet_cancel', 'bet_cancel_rollback'))
            OR (a.type = 'free_bets_in_play' AND t.kind NOT IN (
                    'bet_stake', 'settlement', 'settlement_rollback', 'cash_out',
                    'cash_out_reversal', 'bet_cancel', 'bet_cancel_rollback'))
            OR (a.type = 'player_bonus' AND t.kind NOT IN (
                    'bonus_credit', 'bonus_conversion', 'bonus_forfeit', 'bet_stake',
                    'settlement', 'resettlement', 'settlement_rollback', 'cash_out',
                    'cash_out_reversal', 'bet_cancel', 'bet_cancel_rollback'))"""),
    ("a free-bet stake moves only from the player's free-bet balance to their free bets in "
     "play, never from or to cash",
     """SELECT 'transaction ' || t.id || ' (bet_stake of ' || t.reference || ') moves '
               || string_agg(a.owner || ' ' || a.type || ' ' || e.amount, ', ' ORDER BY e.id)
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE t.kind = 'bet_stake'
           AND t.id IN (SELECT e2.transaction_id FROM ledger_entries e2
                          JOIN ledger_accounts a2 ON a2.id = e2.account_id
                         WHERE a2.type IN ('player_free_bet', 'free_bets_in_play'))
         GROUP BY t.id
        HAVING count(*) <> 2
            OR count(DISTINCT a.owner) <> 1
            OR coalesce(sum(e.amount) FILTER (WHERE a.type = 'player_free_bet'), 0) >= 0
            OR count(*) FILTER (WHERE a.type NOT IN ('player_free_bet',
                                                     'free_bets_in_play')) > 0"""),
    ("a bonus conversion moves bonus funds to the same player's cash; a forfeiture moves them "
     "to house promotions; a credit comes from house promotions",
     """SELECT 'transaction ' || t.id || ' (' || t.kind || ') moves '
               || string_agg(a.owner || ' ' || a.type || ' ' || e.amount, ', ' ORDER BY e.id)
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE t.kind IN ('bonus_conversion', 'bonus_forfeit', 'bonus_credit')
           AND t.result = 'ok'
         GROUP BY t.id, t.kind
        HAVING count(*) <> 2
            OR (t.kind = 'bonus_conversion' AND (
                   count(DISTINCT a.owner) <> 1
                   OR coalesce(sum(e.amount) FILTER (WHERE a.type = 'player_bonus'), 0) >= 0
                   OR count(*) FILTER (WHERE a.type = 'player_cash') <> 1))
            OR (t.kind = 'bonus_forfeit' AND (
                   coalesce(sum(e.amount) FILTER (WHERE a.type = 'player_bonus'), 0) >= 0
                   OR count(*) FILTER (WHERE a.type = 'house_promotions') <> 1))
            OR (t.kind = 'bonus_credit' AND (
                   coalesce(sum(e.amount) FILTER (WHERE a.type = 'player_bonus'), 0) <= 0
                   OR count(*) FILTER (WHERE a.type = 'house_promotions') <> 1))"""),

    # The whole ledger.
    ("the whole ledger sums to zero in each currency",
     """SELECT currency || ' sums to ' || sum(amount) FROM ledger_entries
         GROUP BY currency HAVING sum(amount) <> 0"""),
    ("the balance rows sum to zero in each currency (every row of a hot account counted)",
     """SELECT a.currency || ': balance rows sum to ' || sum(b.posted)
          FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id
         GROUP BY a.currency HAVING sum(b.posted) <> 0"""),
]

INVARIANTS: list[str] = [words for words, _ in CHECKS]


def run(conn: Connection, limit: int = 20) -> list[str]:
    """All violations, at most `limit` per invariant, each prefixed by the invariant."""
    violations: list[str] = []
    for words, query in CHECKS:
        for (row,) in conn.execute(text(f"SELECT * FROM ({query}) v LIMIT {limit}")):
            violations.append(f"{words}: {row}")
    return violations
