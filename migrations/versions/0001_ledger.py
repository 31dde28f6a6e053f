"""Ledger: accounts, balance rows, transactions, entries, holds and the posting functions."""

from pathlib import Path

from alembic import op

revision = "0001_ledger"
down_revision = None

SQL = Path(__file__).resolve().parents[2] / "ledger" / "sql"


def upgrade() -> None:
    op.execute((SQL / "schema.sql").read_text())
    op.execute((SQL / "functions.sql").read_text())


def downgrade() -> None:
    op.execute("""
        DROP FUNCTION ledger_resolve_hold, ledger_hold, ledger_post_many, ledger_post, ledger_replay, ledger_raced,
                      ledger_lock_hot_shard, ledger_ensure_accounts;
        DROP TYPE ledger_leg;
        DROP TABLE ledger_holds, ledger_entries, ledger_transactions, ledger_balances, ledger_accounts;
        DROP FUNCTION ledger_refuse_change;
    """)
