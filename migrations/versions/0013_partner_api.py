"""The partner API (issue 14): list indexes, API keys managed through the API, rate limits,
and the indexes the player statement reads through.

- Lists page newest first by (created_at, id) within a partner (api/pagination.py,
  store/pagination.py): one index per way a list is read, so a page is an index range scan
  however many rows the table holds. `players_partner` (partner_id) is a prefix of
  `players_list` and goes.
- api_keys: `expires_at` (rolling a key gives the old one an expiry), `last_used_at` (recorded
  at most once a minute per key and API process), `rate_limits` (per key and per scope
  overrides of the configured limits: {"*": {"requests": 100, "window_seconds": 1}, ...}),
  `created_by` (the actor that made it) and `rolled_from` (the key it replaced).
- rate_limit_buckets: one token bucket per API key (and per key and scope where a scope has a
  limit), shared by every API process. UNLOGGED: a bucket is not worth a WAL write per request,
  and after a crash every bucket simply starts full.
- ledger_entries (account_id, transaction_id) and ledger_holds (debit_account_id,
  transaction_id): a player's statement pages through its accounts' movements in transaction
  order (ledger/statement.py).
"""

from alembic import op

revision = "0013_partner_api"
down_revision = "0012_partner_webhooks"

UPGRADE = r"""
CREATE INDEX players_list ON players (partner_id, created_at DESC, id DESC);
CREATE INDEX players_list_status ON players (partner_id, status, created_at DESC, id DESC);
CREATE INDEX players_list_all ON players (created_at DESC, id DESC);
DROP INDEX players_partner;

ALTER TABLE api_keys
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN rate_limits  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rate_limits) = 'object'),
    ADD COLUMN created_by   text,
    ADD COLUMN rolled_from  text REFERENCES api_keys (id);
CREATE INDEX api_keys_list ON api_keys (partner_id, created_at DESC, id DESC);
CREATE INDEX api_keys_list_all ON api_keys (created_at DESC, id DESC);

CREATE UNLOGGED TABLE rate_limit_buckets (
    bucket      text PRIMARY KEY,               -- <api key id> | <api key id> <scope>
    capacity    double precision NOT NULL CHECK (capacity >= 1),   -- the limit's requests
    rate        double precision NOT NULL CHECK (rate > 0),        -- tokens per second
    tokens      double precision NOT NULL,      -- requests left (refills continuously)
    allowed     boolean NOT NULL,               -- whether the last request took a token
    updated_at  timestamptz NOT NULL
);

CREATE INDEX ledger_entries_account_transaction ON ledger_entries (account_id, transaction_id);
CREATE INDEX ledger_holds_debit ON ledger_holds (debit_account_id, transaction_id);
"""

DOWNGRADE = """
DROP INDEX ledger_holds_debit;
DROP INDEX ledger_entries_account_transaction;
DROP TABLE rate_limit_buckets;
DROP INDEX api_keys_list_all;
DROP INDEX api_keys_list;
ALTER TABLE api_keys DROP COLUMN rolled_from, DROP COLUMN created_by, DROP COLUMN rate_limits,
                     DROP COLUMN last_used_at, DROP COLUMN expires_at;
CREATE INDEX players_partner ON players (partner_id);
DROP INDEX players_list_all;
DROP INDEX players_list_status;
DROP INDEX players_list;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
