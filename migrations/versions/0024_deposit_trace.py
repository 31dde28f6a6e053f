"""Reserved for the observability overhead work (issue 12: deposits at most 5 % slower).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0024_deposit_trace"
down_revision = "0023_settlement_speed"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
