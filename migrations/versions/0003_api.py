"""API tables: hashed API keys and the idempotency records of POST requests."""

from alembic import op

revision = "0003_api"
down_revision = "0002_platform"

UPGRADE = r"""
-- Only a SHA-256 of each key is kept; the plaintext is shown once, when the key is made.
-- `prefix` (the key's first characters) is public: it finds the row and names the key in logs
-- and UIs without revealing it.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL CHECK (length(key_hash) = 32),
    role        text NOT NULL CHECK (role IN ('partner', 'operator')),
    partner_id  text,
    scopes      text[] NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    -- A partner key always belongs to one partner; an operator key to none.
    CHECK ((role = 'partner') = (partner_id IS NOT NULL))
);

-- One row per (API key, Idempotency-Key): the first request's fingerprint, who is running it
-- now, and once it finished, the response every retry gets back. While response_status is NULL
-- the first request is still running (or died: locked_at tells how long ago).
CREATE TABLE idempotency_records (
    api_key_id       text NOT NULL REFERENCES api_keys (id),
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_method   text NOT NULL,
    request_path     text NOT NULL,
    request_hash     bytea NOT NULL,
    claim_token      uuid NOT NULL,
    locked_at        timestamptz NOT NULL DEFAULT now(),
    response_status  smallint,
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX idempotency_records_created ON idempotency_records (created_at);
"""

DOWNGRADE = """
DROP TABLE idempotency_records;
DROP TABLE api_keys;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
