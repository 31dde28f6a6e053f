"""Indexes of the partner API's lists (issue 14): deposits, withdrawals, bets, markets.

Every list pages newest first by (created, id) within a partner (store/pagination.py), with
filters by player and status. One index per way a list is read, so a page is one index range
scan however many rows the table holds (bench/lists.py):

- <table>_list          (partner_id, created DESC, id DESC)          a partner's list
- <table>_list_status   (partner_id, status, created DESC, id DESC)  ... of one status
- <table>_list_player   (player_id, created DESC, id DESC)           one player's
- <table>_list_all      (created DESC, id DESC)                      an operator's, all partners

The player indexes replace deposits_player, withdrawals_player and bets_player, which they
cover (same leading columns). Bets are created at `placed_at`; withdrawals' status is `state`.

markets gets `created_at` (when the house first recorded a result for it, which is when its
row is made; existing rows take their closed_at) and its list index; a partner lists the
markets its players have bets on (bet_legs_market answers that per market).
"""

from alembic import op

revision = "0015_list_indexes"
down_revision = "0014_sportsbook_products"

UPGRADE = r"""
CREATE INDEX deposits_list ON deposits (partner_id, created_at DESC, id DESC);
CREATE INDEX deposits_list_status ON deposits (partner_id, status, created_at DESC, id DESC);
CREATE INDEX deposits_list_player ON deposits (player_id, created_at DESC, id DESC);
CREATE INDEX deposits_list_all ON deposits (created_at DESC, id DESC);
DROP INDEX deposits_player;

CREATE INDEX withdrawals_list ON withdrawals (partner_id, created_at DESC, id DESC);
CREATE INDEX withdrawals_list_status ON withdrawals (partner_id, state, created_at DESC, id DESC);
CREATE INDEX withdrawals_list_player ON withdrawals (player_id, created_at DESC, id DESC);
CREATE INDEX withdrawals_list_all ON withdrawals (created_at DESC, id DESC);
DROP INDEX withdrawals_player;

CREATE INDEX bets_list ON bets (partner_id, placed_at DESC, id DESC);
CREATE INDEX bets_list_status ON bets (partner_id, status, placed_at DESC, id DESC);
CREATE INDEX bets_list_player ON bets (player_id, placed_at DESC, id DESC);
CREATE INDEX bets_list_all ON bets (placed_at DESC, id DESC);
DROP INDEX bets_player;

ALTER TABLE markets ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
UPDATE markets SET created_at = coalesce(closed_at, updated_at);
CREATE INDEX markets_list ON markets (created_at DESC, market_id DESC);
CREATE INDEX markets_list_betting ON markets (betting, created_at DESC, market_id DESC);
"""

DOWNGRADE = """
DROP INDEX markets_list_betting;
DROP INDEX markets_list;
ALTER TABLE markets DROP COLUMN created_at;
CREATE INDEX bets_player ON bets (player_id, placed_at);
DROP INDEX bets_list_all;
DROP INDEX bets_list_player;
DROP INDEX bets_list_status;
DROP INDEX bets_list;
CREATE INDEX withdrawals_player ON withdrawals (player_id, created_at);
DROP INDEX withdrawals_list_all;
DROP INDEX withdrawals_list_player;
DROP INDEX withdrawals_list_status;
DROP INDEX withdrawals_list;
CREATE INDEX deposits_player ON deposits (player_id, created_at DESC);
DROP INDEX deposits_list_all;
DROP INDEX deposits_list_player;
DROP INDEX deposits_list_status;
DROP INDEX deposits_list;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
