"""Reserved for the deposit path work (issue 16: fewer round trips).

Changes nothing yet: it keeps the revision chain linear while the work lands.
"""

revision = "0022_deposit_path"
down_revision = "0021_api_versions"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
