"""Payment reconciliation (issue 11): runs and their breaks (the operator queue).

- reconciliation_runs: one row per run over a window [window_start, window_end) of insertion
  time, with its verdict, counts by break class, match rates and residual per currency. `seq`
  is the insertion order of runs.
- reconciliation_breaks: one row per break (class + business key) with the evidence of all
  three sides; `open` until auto-repaired (`repaired`) or resolved by an operator with a reason
  (`resolved`). One open break per (class, business key): a rerun finds it again, it does not
  queue it twice (`last_run_id` says which run saw it last).
"""

from alembic import op

revision = "0016_reconciliation"
down_revision = "0015_list_indexes"

UPGRADE = r"""
CREATE TABLE reconciliation_runs (
    id              text PRIMARY KEY,
    seq             bigserial UNIQUE,
    provider        text NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL CHECK (window_end > window_start),
    as_of           timestamptz NOT NULL,
    verdict         text NOT NULL CHECK (verdict IN ('reconciled', 'reconciled_with_pending',
                                                     'breaks', 'incomplete')),
    items           integer NOT NULL DEFAULT 0,
    matched         integer NOT NULL DEFAULT 0,
    matched_amount  bigint NOT NULL DEFAULT 0,
    total_amount    bigint NOT NULL DEFAULT 0,
    pending         integer NOT NULL DEFAULT 0,
    repaired        integer NOT NULL DEFAULT 0,
    fees_booked     integer NOT NULL DEFAULT 0,
    gateway_rows    integer NOT NULL DEFAULT 0,
    counts          jsonb NOT NULL DEFAULT '{}',
    residual        jsonb NOT NULL DEFAULT '{}',
    error           text,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_runs_list ON reconciliation_runs (seq DESC);

CREATE TABLE reconciliation_breaks (
    id              bigserial PRIMARY KEY,
    run_id          text NOT NULL REFERENCES reconciliation_runs,
    last_run_id     text NOT NULL REFERENCES reconciliation_runs,
    class           text NOT NULL,
    business_key    text NOT NULL,
    partner_id      text,
    currency        char(3) NOT NULL,
    amount          bigint NOT NULL,
    delta           bigint NOT NULL DEFAULT 0,
    evidence        jsonb NOT NULL,
    repair          text,
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'repaired', 'resolved')),
    resolution      text,
    resolved_by     text,
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX reconciliation_breaks_one_open
    ON reconciliation_breaks (class, business_key) WHERE status = 'open';
CREATE INDEX reconciliation_breaks_queue ON reconciliation_breaks (status, id);
CREATE INDEX reconciliation_breaks_run ON reconciliation_breaks (last_run_id);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE reconciliation_breaks; DROP TABLE reconciliation_runs;")
