"""Reserved for the settlement scale work (issue 16: 100k / 1M bets).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0020_settlement_scale"
down_revision = "0019_ledger_posting"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
