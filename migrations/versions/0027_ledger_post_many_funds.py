"""ledger_post_many checks funds item by item only when a debited account could go short
(issue 16).

Upgrade replaces ledger_post_many (same arguments, result rows, locks and decisions) with the
version in ledger/sql/ledger_post_many_0027.sql: the accounts statement groups the batch's legs
by account and returns the sum of each no-negative account's debits; the walk of running
balances in item order (which parsed the batch's legs and items again and looked every key up
again) runs only when an account's available balance plus all of the batch's debits on it is
below zero, which every running balance is at least. Downgrade restores 0001's definition,
taken from ledger/sql/functions.sql, with 0025's jit = off.
"""

from pathlib import Path

from alembic import op

revision = "0027_ledger_post_many_funds"
down_revision = "0026_ledger_reference_guard"

SQL = Path(__file__).resolve().parents[2] / "ledger" / "sql"


def _previous_ledger_post_many() -> str:
    """0001's ledger_post_many (CREATE FUNCTION ... END $$;) as CREATE OR REPLACE, with 0025's
    setting."""
    text = (SQL / "functions.sql").read_text()
    start = text.index("CREATE FUNCTION ledger_post_many(")
    end = text.index("END $$;", start) + len("END $$;")
    body = "CREATE OR REPLACE" + text[start + len("CREATE"):end]
    return f"{body}\n\nALTER FUNCTION ledger_post_many(jsonb, jsonb) SET jit = off;\n"


def upgrade() -> None:
    op.execute((SQL / "ledger_post_many_0027.sql").read_text())


def downgrade() -> None:
    op.execute(_previous_ledger_post_many())
