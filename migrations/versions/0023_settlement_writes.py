"""Reserved for the settlement writes (issue 16, fewer index updates per settled bet).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0023_settlement_writes"
down_revision = "0022_deposit_path"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
