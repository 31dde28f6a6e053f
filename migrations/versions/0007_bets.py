"""PLACEHOLDER (lead): keeps the migration chain whole until the owner writes this migration.
Overwrite this file completely."""

revision = "0007_bets"
down_revision = "0006_kyc_withdrawals"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
