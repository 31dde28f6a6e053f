"""Settlement posting (issue 16): a ledger entry's transaction and a settlement history row's
bet are checked once per statement, not once per row.

`ledger_entries.transaction_id REFERENCES ledger_transactions` checked every entry row on its
own: PostgreSQL's foreign-key trigger runs one `SELECT 1 ... FOR KEY SHARE` per inserted row,
and the share lock it takes rewrites (and WAL-logs) the transaction row. A settlement page of
5,000 bets inserts 10,000 entries: ~9 us of PostgreSQL CPU per settled bet (of ~50 in
ledger_post_many); the statement trigger below costs ~1.4 us.

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

`bet_settlements.bet_id REFERENCES bets` likewise (~3 us per history row, a row per settled
bet; the page's bets are locked FOR UPDATE by then): `bet_settlements_bet_exists` checks a
statement's history rows against bets once, taking the same FOR KEY SHARE locks on the bets as
the foreign key (foreign_key_violation as before). The referenced side, which the foreign key
held (NO ACTION), is held by statement triggers on bets that cost a settlement's UPDATE of its
bets nothing (they fire only on DELETE, on an UPDATE that sets bets.id, and on TRUNCATE; no app
code does any of these):
- `bets_keep_history` AFTER DELETE (transition table of the deleted bets): refused when one of
  them has history rows;
- `bets_keep_history_ids` AFTER UPDATE OF id: refused when any history row's bet is gone;
- `bets_no_truncate_with_history` BEFORE TRUNCATE: refused while bet_settlements has rows (the
  foreign key refused it, or took the history with it under CASCADE; history is append-only).
These three check with a fresh snapshot, so they run under READ COMMITTED only (the app's
isolation; under REPEATABLE READ / SERIALIZABLE they refuse, where the foreign key's
cross-check would have raised a serialization failure in a race).

`ledger_entries_account` (account_id, shard, id), from 0001, is dropped: every query that reads
an account's entries (ledger/statement.py, balances, reconciliation) goes through
`ledger_entries_account_transaction` (account_id, transaction_id, 0013), and the ledger check's
per-row queries read the whole table. Each entry paid an insertion into it (~1.2 us; a
settled bet writes two entries). Dropped and rebuilt CONCURRENTLY (outside the migration's
transaction), so neither direction blocks postings.

Downgrade drops the triggers, adds the foreign keys back (validated over every row) and
rebuilds the index.
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

CREATE FUNCTION bet_settlements_bet_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids     text[];
    v_found   bigint;
    v_missing text;
BEGIN
    SELECT array_agg(DISTINCT n.bet_id) INTO v_ids FROM new_settlements n;
    -- FOR KEY SHARE, as the foreign key took: a bet cannot go while its history is being
    -- written (settlement has its bets locked FOR UPDATE already: then this is no extra lock).
    SELECT count(*) INTO v_found
      FROM (SELECT 1 FROM bets b WHERE b.id = ANY(v_ids) FOR KEY SHARE OF b) k;
    IF v_found <> coalesce(cardinality(v_ids), 0) THEN
        SELECT min(x) INTO v_missing FROM unnest(v_ids) x
         WHERE NOT EXISTS (SELECT 1 FROM bets b WHERE b.id = x);
        RAISE EXCEPTION 'bet_settlements: history of bet % refused', v_missing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (bet_id)=(%s) is not present in table "bets".', v_missing),
                  TABLE = 'bet_settlements', CONSTRAINT = 'bet_settlements_bet_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION bets_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_bet text;
BEGIN
    -- Under READ COMMITTED each query below sees what committed before it, also history
    -- written by a transaction this one waited for (its FOR KEY SHARE lock on the bet); an
    -- older snapshot (REPEATABLE READ, SERIALIZABLE) would not: refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'bets: % refused outside READ COMMITTED (settlement history guard)', TG_OP
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF TG_OP = 'DELETE' THEN
        SELECT min(o.id) INTO v_bet FROM old_bets o
         WHERE EXISTS (SELECT 1 FROM bet_settlements s WHERE s.bet_id = o.id);
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT min(s.bet_id) INTO v_bet FROM bet_settlements s
         WHERE NOT EXISTS (SELECT 1 FROM bets b WHERE b.id = s.bet_id);
    ELSE
        SELECT min(s.bet_id) INTO v_bet FROM bet_settlements s;
    END IF;
    IF v_bet IS NOT NULL THEN
        RAISE EXCEPTION 'bets: % of bet % refused, it has settlement history', TG_OP, v_bet
            USING ERRCODE = 'foreign_key_violation', TABLE = 'bets',
                  CONSTRAINT = 'bet_settlements_bet_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER bet_settlements_bet_exists AFTER INSERT ON bet_settlements
    REFERENCING NEW TABLE AS new_settlements
    FOR EACH STATEMENT EXECUTE FUNCTION bet_settlements_bet_exists();
CREATE TRIGGER bets_keep_history AFTER DELETE ON bets
    REFERENCING OLD TABLE AS old_bets
    FOR EACH STATEMENT EXECUTE FUNCTION bets_keep_history();
CREATE TRIGGER bets_keep_history_ids AFTER UPDATE OF id ON bets
    FOR EACH STATEMENT EXECUTE FUNCTION bets_keep_history();
CREATE TRIGGER bets_no_truncate_with_history BEFORE TRUNCATE ON bets
    FOR EACH STATEMENT EXECUTE FUNCTION bets_keep_history();

ALTER TABLE bet_settlements DROP CONSTRAINT bet_settlements_bet_id_fkey;
"""

DOWNGRADE = r"""
ALTER TABLE bet_settlements ADD CONSTRAINT bet_settlements_bet_id_fkey
    FOREIGN KEY (bet_id) REFERENCES bets (id);
DROP TRIGGER bets_no_truncate_with_history ON bets;
DROP TRIGGER bets_keep_history_ids ON bets;
DROP TRIGGER bets_keep_history ON bets;
DROP TRIGGER bet_settlements_bet_exists ON bet_settlements;
DROP FUNCTION bets_keep_history();
DROP FUNCTION bet_settlements_bet_exists();
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_transaction_id_fkey
    FOREIGN KEY (transaction_id) REFERENCES ledger_transactions;
DROP TRIGGER ledger_transactions_no_truncate ON ledger_transactions;
DROP TRIGGER ledger_entries_transaction_exists ON ledger_entries;
DROP FUNCTION ledger_entries_transaction_exists();
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_entries_account")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        # An invalid index left by an interrupted build goes first.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_entries_account")
        op.execute("CREATE INDEX CONCURRENTLY ledger_entries_account "
                   "ON ledger_entries (account_id, shard, id)")
    op.execute(DOWNGRADE)
