"""The second factor's wrong codes are counted (security finding: unlimited TOTP guesses).

- totp_enrolments: `failed_codes` wrong codes since `failed_codes_since` (the first of the
  current window), and `locked_until`: while it is in the future, no code of the enrolment is
  checked (confirming a new authenticator, or the current one's code to replace it). The rules
  are commands/second_factor.py's.
"""

from alembic import op

revision = "0017_second_factor_lockout"
down_revision = "0016_reconciliation"

UPGRADE = r"""
ALTER TABLE totp_enrolments
    ADD COLUMN failed_codes integer NOT NULL DEFAULT 0 CHECK (failed_codes >= 0),
    ADD COLUMN failed_codes_since timestamptz,
    ADD COLUMN locked_until timestamptz;
"""

DOWNGRADE = r"""
ALTER TABLE totp_enrolments
    DROP COLUMN locked_until,
    DROP COLUMN failed_codes_since,
    DROP COLUMN failed_codes;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
