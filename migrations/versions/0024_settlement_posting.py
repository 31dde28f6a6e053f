"""Settlement posting (issue 16): a ledger entry's transaction is checked once per statement.

`ledger_entries.transaction_id REFERENCES ledger_transactions` checked every entry row on its
own: PostgreSQL's foreign-key trigger runs one `SELECT 1 ... FOR KEY SHARE` per inserted row,
and the share lock it takes rewrites (and WAL-logs) the transaction row. A settlement page of
5,000 bets inserts 10,000 entries: ~9 us of PostgreSQL CPU per settled bet (of ~50 in
ledger_post_many; /tmp measurement in the commit message).

The same rule, kept by the database, checked set-based:
- `ledger_entries_transaction_exists`: AFTER INSERT ... FOR EACH STATEMENT, with the statement's
  new rows as a transition table: every distinct transaction id they name must be a row of
  ledger_transactions (one index scan over the sorted ids), else the statement fails with
  foreign_key_violation (SQLSTATE 23503, as the foreign key did).
- The other side of a foreign key (the referenced row cannot go or change its id) is held by
  ledger_transactions being append-only: UPDATE and DELETE are refused by
  ledger_transactions_append_only (0001), and TRUNCATE, which the foreign key refused (unless
  it took the entries with it), is refused now by ledger_transactions_no_truncate.
- An entry's transaction_id cannot change: ledger_entries refuses UPDATE (0001).
Like the foreign key, the triggers do not fire with session_replication_role = replica (the
superuser's bypass, which tests/ledger/test_check.py uses to forge a corrupt ledger); `ledger
check` reports an entry whose transaction does not exist, and that the guards are in place.

Downgrade drops the triggers and adds the foreign key back (validated over every entry).
"""

from alembic import op

revision = "0024_settlement_posting"
down_revision = "0023_settlement_writes"

UPGRADE = r"""
CREATE FUNCTION ledger_entries_transaction_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids     bigint[];
    v_found   bigint;
    v_missing bigint;
BEGIN
    SELECT array_agg(DISTINCT n.transaction_id) INTO v_ids FROM new_entries n;
    SELECT count(*) INTO v_found FROM ledger_transactions t WHERE t.id = ANY(v_ids);
    IF v_found <> coalesce(cardinality(v_ids), 0) THEN
        SELECT min(x) INTO v_missing FROM unnest(v_ids) x
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = x);
        RAISE EXCEPTION 'ledger_entries: entry of transaction % refused', v_missing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (transaction_id)=(%s) is not present in table '
                                  '"ledger_transactions".', v_missing),
                  TABLE = 'ledger_entries', CONSTRAINT = 'ledger_entries_transaction_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_transaction_exists AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_transaction_exists();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_transaction_id_fkey;
"""

DOWNGRADE = r"""
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_transaction_id_fkey
    FOREIGN KEY (transaction_id) REFERENCES ledger_transactions;
DROP TRIGGER ledger_transactions_no_truncate ON ledger_transactions;
DROP TRIGGER ledger_entries_transaction_exists ON ledger_entries;
DROP FUNCTION ledger_entries_transaction_exists();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
