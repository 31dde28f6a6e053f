"""Withdrawals and the second factor made safe (issue 9: items 9, 11, 12).

- player_payout_destinations: the bank accounts a player's payouts may go to; a withdrawal
  naming any other destination is refused.
- totp_enrolments: a secret is pending until a first code confirms it, a replacement waits
  beside the confirmed one, and the last accepted time-step is kept (a code is used once).
  Enrolments made before this revision were already in use: they count as confirmed.
- withdrawals: `payout_review`, where a gateway step that passed its deadline waits for an
  operator.
- withdrawal_payouts: `cancelled` for a leg never sent (the withdrawal ended first), which gives
  the deposit's refundable amount back; `first_sent_at`, so a step retried after the gateway
  may have forgotten its idempotency key looks for what it created first.
"""

from alembic import op

revision = "0009_withdrawal_safety"
down_revision = "0008_bet_ids_per_partner"

UPGRADE = r"""
CREATE TABLE player_payout_destinations (
    player_id    text NOT NULL REFERENCES players (id),
    destination  text NOT NULL,            -- the gateway's bank account id, e.g. ba_...
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, destination)
);

ALTER TABLE totp_enrolments
    ALTER COLUMN secret_encrypted DROP NOT NULL,
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN pending_secret_encrypted text,
    ADD COLUMN pending_since timestamptz,
    ADD COLUMN last_used_step bigint NOT NULL DEFAULT 0;
UPDATE totp_enrolments SET confirmed_at = created_at;
ALTER TABLE totp_enrolments ADD CONSTRAINT totp_enrolments_confirmed_has_secret
    CHECK ((confirmed_at IS NULL) = (secret_encrypted IS NULL));

ALTER TABLE withdrawals DROP CONSTRAINT withdrawals_state_check;
ALTER TABLE withdrawals ADD CONSTRAINT withdrawals_state_check
    CHECK (state IN ('checking', 'held', 'awaiting_2fa', 'awaiting_approval', 'paying',
                     'payout_review', 'paid', 'cancelled', 'rejected', 'failed'));

ALTER TABLE withdrawal_payouts DROP CONSTRAINT withdrawal_payouts_state_check;
ALTER TABLE withdrawal_payouts ADD CONSTRAINT withdrawal_payouts_state_check
    CHECK (state IN ('planned', 'confirmed', 'failed', 'cancelled'));
ALTER TABLE withdrawal_payouts ADD COLUMN first_sent_at timestamptz;
"""

DOWNGRADE = r"""
ALTER TABLE withdrawal_payouts DROP COLUMN first_sent_at;
UPDATE withdrawal_payouts SET state = 'failed' WHERE state = 'cancelled';
ALTER TABLE withdrawal_payouts DROP CONSTRAINT withdrawal_payouts_state_check;
ALTER TABLE withdrawal_payouts ADD CONSTRAINT withdrawal_payouts_state_check
    CHECK (state IN ('planned', 'confirmed', 'failed'));

UPDATE withdrawals SET state = 'paying' WHERE state = 'payout_review';
ALTER TABLE withdrawals DROP CONSTRAINT withdrawals_state_check;
ALTER TABLE withdrawals ADD CONSTRAINT withdrawals_state_check
    CHECK (state IN ('checking', 'held', 'awaiting_2fa', 'awaiting_approval', 'paying', 'paid',
                     'cancelled', 'rejected', 'failed'));

DELETE FROM totp_enrolments WHERE secret_encrypted IS NULL;
ALTER TABLE totp_enrolments
    DROP CONSTRAINT totp_enrolments_confirmed_has_secret,
    DROP COLUMN last_used_step,
    DROP COLUMN pending_since,
    DROP COLUMN pending_secret_encrypted,
    DROP COLUMN confirmed_at,
    ALTER COLUMN secret_encrypted SET NOT NULL;

DROP TABLE player_payout_destinations;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
