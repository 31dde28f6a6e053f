"""PLACEHOLDER (lead): keeps the migration chain whole until the owner writes this migration.
Overwrite this file completely."""

revision = "0006_kyc_withdrawals"
down_revision = "0005_compliance"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
