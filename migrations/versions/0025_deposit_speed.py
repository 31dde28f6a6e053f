"""Reserved for the deposit worker CPU work (issue 16: deposits ratio 0.8 at concurrency 24).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0025_deposit_speed"
down_revision = "0024_deposit_trace"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
