"""Reserved for the table-growth work (issue 16: partitioning audit, outbox, webhook attempts).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0018_table_growth"
down_revision = "0017_second_factor_lockout"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
