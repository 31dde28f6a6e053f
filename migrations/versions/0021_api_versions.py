"""Reserved for the partner API work (issue 14: per-key version pinning).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0021_api_versions"
down_revision = "0020_settlement_scale"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
