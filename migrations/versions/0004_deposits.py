"""PLACEHOLDER (lead): keeps the migration chain whole until the owner writes this migration.
Overwrite this file completely."""

revision = "0004_deposits"
down_revision = "0003_api"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
