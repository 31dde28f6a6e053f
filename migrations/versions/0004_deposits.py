"""Deposits: one row per deposit (its state machine and gateway references) and the Stripe
events already processed (each event id handled once, whatever Stripe redelivers)."""

from alembic import op

revision = "0004_deposits"
down_revision = "0003_api"

UPGRADE = r"""
CREATE TABLE deposits (
    id                      text PRIMARY KEY,           -- dep_<hash of api key id + Idempotency-Key>
    workflow_id             text NOT NULL UNIQUE,       -- deposit-<id>
    player_id               text NOT NULL REFERENCES players (id),
    partner_id              text NOT NULL,
    amount                  bigint NOT NULL CHECK (amount > 0),     -- minor units
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_method          text NOT NULL,
    status                  text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'requires_action', 'succeeded', 'failed')),
    failure_code            text,
    failure_reason          text,
    gateway                 text NOT NULL DEFAULT 'stripe',
    gateway_payment_intent  text UNIQUE,
    gateway_charge          text,
    next_action             jsonb,                      -- what the customer must do (3-D Secure)
    ledger_transaction_id   bigint,
    created_by              text NOT NULL,              -- audit actor: api_key:<id>
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    succeeded_at            timestamptz,
    failed_at               timestamptz,
    CHECK ((status = 'succeeded') = (succeeded_at IS NOT NULL)),
    CHECK ((status = 'succeeded') <= (ledger_transaction_id IS NOT NULL)),
    CHECK ((status = 'failed') = (failed_at IS NOT NULL AND failure_code IS NOT NULL))
);
CREATE INDEX deposits_player ON deposits (player_id, created_at DESC);
CREATE INDEX deposits_open ON deposits (status) WHERE status NOT IN ('succeeded', 'failed');

-- Every Stripe event we accepted (signature valid). `outcome` says what we did with it; an event
-- whose outcome is final is acknowledged without being processed again. answered_in_request:
-- the event reports the result of our own create call, which the workflow has from the call.
CREATE TABLE stripe_events (
    id            text PRIMARY KEY,                     -- evt_...
    type          text NOT NULL,
    object_id     text,                                 -- pi_..., re_..., po_...
    deposit_id    text,
    outcome       text NOT NULL DEFAULT 'received'
        CHECK (outcome IN ('received', 'signalled', 'workflow_closed', 'answered_in_request',
                           'unknown_object', 'ignored_type')),
    payload       jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz
);
CREATE INDEX stripe_events_object ON stripe_events (object_id);
"""

DOWNGRADE = """
DROP TABLE stripe_events;
DROP TABLE deposits;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
