"""Reserved for the ledger posting work (issue 16: single-statement postings).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0019_ledger_posting"
down_revision = "0018_table_growth"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
