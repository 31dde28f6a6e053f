"""Reserved for the settlement speed work (issue 16: 100,000 bets in 8 s).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0023_settlement_speed"
down_revision = "0022_deposit_path"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
