"""Settlement under races, reruns and retries (issue 9 items 1, 2, 6):

- `bets.version` and `bet_settlements.version` become bigint: a parlay's settlement version is
  the sum of its legs' result versions, which overflows `integer` for epoch-second versions.
- `bets.rollbacks`: how many times the bet's settlement was rolled back (its rollback
  generation). Ledger keys of later settlements name it (`bet:<id>:g<n>:v<version>`), so a key
  is never reused for a different posting after a rollback.
- `bets.needs_review`: why settlement could not post this bet (e.g. a payout no ledger amount
  can hold); the bet is left as it was, reported, and skipped until an operator resolves it.
- `markets`: whether a market takes bets. A market closes when its first result is recorded and
  stays closed after a rollback until an operator reopens it (the outcome is public).
"""

from alembic import op

revision = "0011_settlement_safety"
down_revision = "0010_deposit_review"

UPGRADE = r"""
ALTER TABLE bets ALTER COLUMN version TYPE bigint;
ALTER TABLE bet_settlements ALTER COLUMN version TYPE bigint;

ALTER TABLE bets ADD COLUMN rollbacks integer NOT NULL DEFAULT 0 CHECK (rollbacks >= 0),
                 ADD COLUMN needs_review text;
UPDATE bets b SET rollbacks = r.n
  FROM (SELECT bet_id, count(*) AS n FROM bet_settlements WHERE kind = 'rollback'
         GROUP BY bet_id) r
 WHERE r.bet_id = b.id;
COMMENT ON COLUMN bets.rollbacks IS 'rollback generation: part of later settlement ledger keys';
COMMENT ON COLUMN bets.needs_review IS 'why settlement could not post this bet (NULL: none)';

CREATE TABLE markets (
    market_id    text PRIMARY KEY,
    betting      text NOT NULL CHECK (betting IN ('open', 'closed')),
    closed_at    timestamptz,                 -- when its first (or a later) result came
    reopened_at  timestamptz,                 -- when an operator last reopened it
    reopened_by  text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO markets (market_id, betting, closed_at)
SELECT market_id, 'closed', min(received_at) FROM market_results GROUP BY market_id;
"""

DOWNGRADE = """
DROP TABLE markets;
ALTER TABLE bets DROP COLUMN needs_review, DROP COLUMN rollbacks;
ALTER TABLE bet_settlements ALTER COLUMN version TYPE integer;
ALTER TABLE bets ALTER COLUMN version TYPE integer;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
