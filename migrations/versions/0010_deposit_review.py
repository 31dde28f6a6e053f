"""Deposits an operator reviews, and payments that finish after their deposit closed.

A deposit whose payment the gateway still processes at the timeout stays open, and goes to
`review` when no verdict comes within the processing limit (or when a gateway step passed its
deadline): `review_code` / `review_reason` say why. A `payment_intent.succeeded` for a deposit
that already closed (failed, or in review) is credited through the deposit's own command, with
the deposit's own ledger key; the Stripe event records it as `credited_after_close` (or
`failed_after_close` when the gateway's late verdict is a failure of a deposit in review,
`mismatch_after_close` when the event does not match the deposit: an operator looks at it).
"""

from alembic import op

revision = "0010_deposit_review"
down_revision = "0009_withdrawal_safety"

UPGRADE = r"""
ALTER TABLE deposits DROP CONSTRAINT deposits_status_check;
ALTER TABLE deposits ADD CONSTRAINT deposits_status_check
    CHECK (status IN ('pending', 'processing', 'requires_action', 'review', 'succeeded', 'failed'));
ALTER TABLE deposits ADD COLUMN review_code text, ADD COLUMN review_reason text;
ALTER TABLE deposits ADD CONSTRAINT deposits_review_has_a_reason
    CHECK (status <> 'review' OR review_code IS NOT NULL);

ALTER TABLE stripe_events DROP CONSTRAINT stripe_events_outcome_check;
ALTER TABLE stripe_events ADD CONSTRAINT stripe_events_outcome_check
    CHECK (outcome IN ('received', 'signalled', 'workflow_closed', 'answered_in_request',
                       'unknown_object', 'ignored_type', 'credited_after_close',
                       'failed_after_close', 'mismatch_after_close'));
"""

DOWNGRADE = r"""
ALTER TABLE stripe_events DROP CONSTRAINT stripe_events_outcome_check;
ALTER TABLE stripe_events ADD CONSTRAINT stripe_events_outcome_check
    CHECK (outcome IN ('received', 'signalled', 'workflow_closed', 'answered_in_request',
                       'unknown_object', 'ignored_type'));
ALTER TABLE deposits DROP CONSTRAINT deposits_review_has_a_reason;
ALTER TABLE deposits DROP COLUMN review_reason, DROP COLUMN review_code;
ALTER TABLE deposits DROP CONSTRAINT deposits_status_check;
ALTER TABLE deposits ADD CONSTRAINT deposits_status_check
    CHECK (status IN ('pending', 'processing', 'requires_action', 'succeeded', 'failed'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
