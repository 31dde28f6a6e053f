"""Ledger posting (issue 16): ledger_post does its work in fewer statements.

Upgrade replaces ledger_post (same arguments, same result columns, same rules) with the version
in ledger/sql/ledger_post_0019.sql: one statement reads the key's prior outcome and resolves
the accounts, one locks the single-row balance rows, a hot account's row is tried directly
before it is searched for, and one statement writes the transaction, the balance rows and the
entries. Downgrade restores 0001's definition, taken from ledger/sql/functions.sql.
"""

from pathlib import Path

from alembic import op

revision = "0019_ledger_posting"
down_revision = "0018_table_growth"

SQL = Path(__file__).resolve().parents[2] / "ledger" / "sql"


def _previous_ledger_post() -> str:
    """0001's ledger_post (CREATE FUNCTION ... END $$;) and its settings, as CREATE OR REPLACE."""
    text = (SQL / "functions.sql").read_text()
    start = text.index("CREATE FUNCTION ledger_post(")
    end = text.index("END $$;", start) + len("END $$;")
    body = "CREATE OR REPLACE" + text[start + len("CREATE"):end]
    settings = ("ALTER FUNCTION ledger_post(text, bytea, text, text, text, jsonb, jsonb)\n"
                "    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;")
    if settings not in text:
        raise RuntimeError("functions.sql no longer holds ledger_post's settings")
    return f"{body}\n\n{settings}\n"


def upgrade() -> None:
    op.execute((SQL / "ledger_post_0019.sql").read_text())


def downgrade() -> None:
    op.execute(_previous_ledger_post())
