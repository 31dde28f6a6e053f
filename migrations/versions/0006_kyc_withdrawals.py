"""KYC cases and their history, TOTP enrolments, withdrawals with their steps and payouts.

Rows here are the read model of the KYC and withdrawal workflows: the workflows decide, their
activities write these rows (with an audit record and an outbox event in the same transaction).
Money never lives here: amounts held, posted or voided are in the ledger.
"""

from alembic import op

revision = "0006_kyc_withdrawals"
down_revision = "0005_compliance"

UPGRADE = r"""
-- One KYC case per player: the current state. Every transition is also in kyc_history.
CREATE TABLE kyc_cases (
    player_id        text PRIMARY KEY REFERENCES players (id),
    workflow_id      text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'review', 'documents',
                         'resubmission_required', 'verified', 'rejected', 'expired')),
    reason_code      text,
    reason           text,
    sanctions_score  numeric(5, 2),
    sanctions_match  text,
    document_attempts integer NOT NULL DEFAULT 0,
    provider_check_id text,
    verified_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE kyc_history (
    id          bigserial PRIMARY KEY,
    player_id   text NOT NULL REFERENCES players (id),
    state       text NOT NULL,
    step        text NOT NULL,           -- age, sanctions, review, document, ...
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kyc_history_player ON kyc_history (player_id, id);

-- TOTP secrets, encrypted at rest (Fernet); the provisioning URI is shown once, at enrolment.
CREATE TABLE totp_enrolments (
    player_id         text PRIMARY KEY REFERENCES players (id),
    secret_encrypted  text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE withdrawals (
    id              text PRIMARY KEY,
    player_id       text NOT NULL REFERENCES players (id),
    partner_id      text NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),         -- minor units
    currency        text NOT NULL,
    state           text NOT NULL CHECK (state IN ('checking', 'held', 'awaiting_2fa',
                        'awaiting_approval', 'paying', 'paid', 'cancelled', 'rejected', 'failed')),
    reason_code     text,
    reason          text,
    second_factor   text CHECK (second_factor IN ('totp', 'code')),
    attempts_left   integer,
    paid_amount     bigint NOT NULL DEFAULT 0 CHECK (paid_amount >= 0),
    workflow_id     text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawals_player ON withdrawals (player_id, created_at);

CREATE TABLE withdrawal_steps (
    id             bigserial PRIMARY KEY,
    withdrawal_id  text NOT NULL REFERENCES withdrawals (id),
    step           text NOT NULL,        -- checks, hold, second_factor, approval, payout, ...
    outcome        text NOT NULL,        -- passed, failed, waiting, ...
    detail         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawal_steps_withdrawal ON withdrawal_steps (withdrawal_id, id);

-- The closed-loop plan: refunds to deposit payment methods first, the rest as one payout.
-- Written once per withdrawal (a retried plan reads it back), then each leg's gateway result.
CREATE TABLE withdrawal_payouts (
    withdrawal_id   text NOT NULL REFERENCES withdrawals (id),
    n               integer NOT NULL,
    method          text NOT NULL CHECK (method IN ('refund', 'payout')),
    deposit_id      text,                 -- the deposit refunded (method = refund)
    payment_ref     text,                 -- the gateway's payment refunded
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    state           text NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'confirmed', 'failed')),
    gateway_ref     text,
    failure         text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (withdrawal_id, n)
);
CREATE INDEX withdrawal_payouts_deposit ON withdrawal_payouts (deposit_id) WHERE deposit_id IS NOT NULL;
"""

DOWNGRADE = """
DROP TABLE withdrawal_payouts;
DROP TABLE withdrawal_steps;
DROP TABLE withdrawals;
DROP TABLE totp_enrolments;
DROP TABLE kyc_history;
DROP TABLE kyc_cases;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
