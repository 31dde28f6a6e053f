"""Bet ids per partner: the betting engine's bet id is unique within its partner only.

Two partners may send the same bet id, and neither learns that the other used it. A bet row
keeps the engine's id (`external_id`) and the partner that owns it; its primary key `id` is
internal, `<partner>/<external id>` for new bets (a bet id never contains "/"), so every key
derived from it (`bet:<id>:stake`, `bet:<id>:v<version>`) stays unique across partners. Rows
taken before this migration keep their id (their ledger keys are posted under it).
"""

from alembic import op

revision = "0008_bet_ids_per_partner"
down_revision = "0007_bets"

UPGRADE = r"""
ALTER TABLE bets ADD COLUMN partner_id text, ADD COLUMN external_id text;
UPDATE bets b SET partner_id = p.partner_id, external_id = b.id
  FROM players p WHERE p.id = b.player_id;
ALTER TABLE bets ALTER COLUMN partner_id SET NOT NULL,
                 ALTER COLUMN external_id SET NOT NULL,
                 ADD CONSTRAINT bets_partner_external_id UNIQUE (partner_id, external_id);
COMMENT ON COLUMN bets.id IS 'internal: <partner>/<external_id> (older bets: the engine''s id)';
COMMENT ON COLUMN bets.external_id IS 'the betting engine''s bet id, unique per partner';
"""

DOWNGRADE = """
ALTER TABLE bets DROP CONSTRAINT bets_partner_external_id;
ALTER TABLE bets DROP COLUMN external_id, DROP COLUMN partner_id;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
