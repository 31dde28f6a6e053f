"""Per-key API version pinning (issue 14: versions in the way of Stripe-Version).

- api_keys.api_version: the API version (a date, domain/api_versions.py) the key's requests are
  served under when they send no `Settlepay-Version` header. Keys made before this revision
  were served under 2026-12-01, the only version there was: they are pinned to it.
"""

from alembic import op

revision = "0021_api_versions"
down_revision = "0020_settlement_scale"

UPGRADE = r"""
ALTER TABLE api_keys ADD COLUMN api_version text;
UPDATE api_keys SET api_version = '2026-12-01';
ALTER TABLE api_keys
    ALTER COLUMN api_version SET NOT NULL,
    ADD CONSTRAINT api_keys_api_version_format
        CHECK (api_version ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$');
"""

DOWNGRADE = r"""
ALTER TABLE api_keys DROP CONSTRAINT api_keys_api_version_format;
ALTER TABLE api_keys DROP COLUMN api_version;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
