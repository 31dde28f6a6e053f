"""Reserved for the deposit gate (issue 16, fewer statements per deposit).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0024_deposit_gate"
down_revision = "0023_settlement_writes"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
