"""A ledger transaction's correction and hold references are checked only where they are set
(issue 16).

`ledger_transactions.corrects_id` and `hold_id` REFERENCES ledger_transactions were checked on
every inserted transaction: PostgreSQL queues an AFTER trigger event per row and foreign key,
and firing it fetches the row again to find both columns NULL, as they are for nearly every
transaction (a settlement, a stake, a deposit; only a resettlement sets corrects_id, a hold's
post or void hold_id). ledger_post_many on a captured 5,040-transfer settlement page spent
~11,900 backend instructions per transfer on them (callgrind: 557,993 -> 546,119 with the
two constraints dropped, ~2 % of the function); with the trigger below, 546,478.

The same rule, kept by the database, for the rows that carry a reference:
- `ledger_transactions_reference_exists`: AFTER INSERT ... FOR EACH ROW WHEN (corrects_id IS
  NOT NULL OR hold_id IS NOT NULL): the WHEN is evaluated as the row is inserted, and a row
  without a reference queues nothing. For a row with one, the transaction it names must exist
  (a statement's rows are all in place by then, as for the foreign key: a batch may correct a
  transaction it posts itself), else foreign_key_violation (SQLSTATE 23503, the constraint's
  name and detail as the foreign key gave them).
- The referenced side needs no lock: a transaction row is never updated or deleted
  (ledger_transactions_append_only, 0001) nor truncated (ledger_transactions_no_truncate,
  0024), so a row that was there when checked stays; the foreign key's FOR KEY SHARE guarded
  against exactly those changes.
- A reference cannot change afterwards: UPDATE is refused (append-only).
Like the foreign keys, the trigger does not fire with session_replication_role = replica;
`ledger check` reports a reference to a transaction that does not exist, and that the guard is
in place.

Downgrade drops the trigger and adds the foreign keys back (validated over every row).
"""

from alembic import op

revision = "0026_ledger_reference_guard"
down_revision = "0025_ledger_no_jit"

UPGRADE = r"""
CREATE FUNCTION ledger_transactions_reference_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_column  text;
    v_missing bigint;
BEGIN
    IF NEW.corrects_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = NEW.corrects_id) THEN
        v_column := 'corrects_id';
        v_missing := NEW.corrects_id;
    ELSIF NEW.hold_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = NEW.hold_id) THEN
        v_column := 'hold_id';
        v_missing := NEW.hold_id;
    END IF;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'ledger_transactions: % % refused', v_column, v_missing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (%s)=(%s) is not present in table '
                                  '"ledger_transactions".', v_column, v_missing),
                  TABLE = 'ledger_transactions',
                  CONSTRAINT = format('ledger_transactions_%s_fkey', v_column);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_transactions_reference_exists AFTER INSERT ON ledger_transactions
    FOR EACH ROW WHEN (NEW.corrects_id IS NOT NULL OR NEW.hold_id IS NOT NULL)
    EXECUTE FUNCTION ledger_transactions_reference_exists();

ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_corrects_id_fkey,
                                DROP CONSTRAINT ledger_transactions_hold_id_fkey;
"""

DOWNGRADE = r"""
ALTER TABLE ledger_transactions
    ADD CONSTRAINT ledger_transactions_corrects_id_fkey
        FOREIGN KEY (corrects_id) REFERENCES ledger_transactions (id),
    ADD CONSTRAINT ledger_transactions_hold_id_fkey
        FOREIGN KEY (hold_id) REFERENCES ledger_transactions (id);
DROP TRIGGER ledger_transactions_reference_exists ON ledger_transactions;
DROP FUNCTION ledger_transactions_reference_exists();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
