"""The append-only tables that grow without bound are partitioned (issue 16: table growth).

- audit_log: RANGE on `seq`. The records written before this revision keep one partition of
  their own, [1, head + 1); new records fill partitions of AUDIT_RECORDS_PER_PARTITION from there.
  A partition holds a contiguous run of the chain, so the oldest full partitions can be detached
  for archive in chain order (audit_archives keeps where the live chain starts again) and
  `audit verify` still walks the chain in global `seq` order across partitions.
- outbox_events and webhook_attempts: RANGE on `created_at`, one partition per calendar month
  (UTC); the primary keys become (id, created_at), since a partitioned table's keys must include
  the partition key. Nothing references either table by foreign key or ON CONFLICT.
- Every partitioned table has a DEFAULT partition, so a lapsed maintenance never refuses a write:
  `settlepay partitions ensure` (store/partitions.py) creates the partitions ahead of time and
  moves any row that landed in a default partition into its own.
- audit_archives: the manifest of audit partitions detached for archive, append-only.

Copying the rows into the partitioned tables is cheap today (the tables are small); the ledger
tables are not partitioned here (see the README's "Scale-out and capacity").
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op
from sqlalchemy import text

revision = "0018_table_growth"
down_revision = "0017_second_factor_lockout"

AUDIT_RECORDS_PER_PARTITION = 10_000_000
MONTHS_AHEAD = 1  # `settlepay partitions ensure` makes more

AUDIT = r"""
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
CREATE TABLE audit_log (
    seq         bigint NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    record      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (seq);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CREATE TRIGGER audit_log_default_no_truncate BEFORE TRUNCATE ON audit_log_default
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
"""

AUDIT_AFTER_COPY = r"""
DROP TABLE audit_log_unpartitioned;
ALTER TABLE audit_log ADD PRIMARY KEY (seq);
CREATE INDEX audit_log_created ON audit_log (created_at);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Audit partitions detached for archive, in chain order: the live chain starts after the last.
CREATE TABLE audit_archives (
    partition        text PRIMARY KEY,
    first_seq        bigint NOT NULL,
    last_seq         bigint NOT NULL CHECK (last_seq >= first_seq),
    first_prev_hash  bytea NOT NULL,
    last_hash        bytea NOT NULL,
    records          bigint NOT NULL,
    oldest_at        timestamptz NOT NULL,
    newest_at        timestamptz NOT NULL,
    detached_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (first_seq)
);
CREATE TRIGGER audit_archives_append_only BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""

OUTBOX = r"""
ALTER SEQUENCE outbox_events_id_seq OWNED BY NONE;
ALTER TABLE outbox_events RENAME TO outbox_events_unpartitioned;
CREATE TABLE outbox_events (
    id              bigint NOT NULL DEFAULT nextval('outbox_events_id_seq'),
    event_type      text NOT NULL,
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    player_id       text,
    partner_id      text,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE outbox_events_id_seq OWNED BY outbox_events.id;
CREATE TABLE outbox_events_default PARTITION OF outbox_events DEFAULT;
"""

OUTBOX_AFTER_COPY = r"""
DROP TABLE outbox_events_unpartitioned;
ALTER TABLE outbox_events ADD PRIMARY KEY (id, created_at);
CREATE INDEX outbox_unpublished ON outbox_events (id) WHERE published_at IS NULL;
CREATE INDEX outbox_aggregate ON outbox_events (aggregate_type, aggregate_id);
"""

ATTEMPTS = r"""
ALTER SEQUENCE webhook_attempts_id_seq OWNED BY NONE;
ALTER TABLE webhook_attempts RENAME TO webhook_attempts_unpartitioned;
CREATE TABLE webhook_attempts (
    id                    bigint NOT NULL DEFAULT nextval('webhook_attempts_id_seq'),
    message_id            bigint NOT NULL REFERENCES webhook_messages (id),
    event_id              text NOT NULL,
    endpoint_id           text NOT NULL,
    partner_id            text NOT NULL,
    trigger               text NOT NULL,
    attempt_number        integer NOT NULL,
    status                text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    response_status_code  integer,
    response_body         text NOT NULL DEFAULT '',
    error                 text,
    duration_ms           integer NOT NULL,
    started_at            timestamptz NOT NULL,
    next_attempt_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE webhook_attempts_id_seq OWNED BY webhook_attempts.id;
CREATE TABLE webhook_attempts_default PARTITION OF webhook_attempts DEFAULT;
"""

ATTEMPTS_AFTER_COPY = r"""
DROP TABLE webhook_attempts_unpartitioned;
ALTER TABLE webhook_attempts ADD PRIMARY KEY (id, created_at);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id DESC);
CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""

# --- downgrade: back to one plain table each (rows of detached partitions are not brought back)

DOWNGRADE = r"""
DROP TABLE audit_archives;

ALTER TABLE audit_log RENAME TO audit_log_partitioned;
CREATE TABLE audit_log (LIKE audit_log_partitioned INCLUDING DEFAULTS);
INSERT INTO audit_log SELECT * FROM audit_log_partitioned;
DROP TABLE audit_log_partitioned;
ALTER TABLE audit_log ADD PRIMARY KEY (seq);
CREATE INDEX audit_log_created ON audit_log (created_at);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

ALTER SEQUENCE outbox_events_id_seq OWNED BY NONE;
ALTER TABLE outbox_events RENAME TO outbox_events_partitioned;
CREATE TABLE outbox_events (LIKE outbox_events_partitioned INCLUDING DEFAULTS);
INSERT INTO outbox_events SELECT * FROM outbox_events_partitioned;
DROP TABLE outbox_events_partitioned;
ALTER SEQUENCE outbox_events_id_seq OWNED BY outbox_events.id;
ALTER TABLE outbox_events ADD PRIMARY KEY (id);
CREATE INDEX outbox_unpublished ON outbox_events (id) WHERE published_at IS NULL;
CREATE INDEX outbox_aggregate ON outbox_events (aggregate_type, aggregate_id);

ALTER SEQUENCE webhook_attempts_id_seq OWNED BY NONE;
ALTER TABLE webhook_attempts RENAME TO webhook_attempts_partitioned;
CREATE TABLE webhook_attempts (LIKE webhook_attempts_partitioned INCLUDING DEFAULTS
                               INCLUDING CONSTRAINTS);
INSERT INTO webhook_attempts SELECT * FROM webhook_attempts_partitioned;
DROP TABLE webhook_attempts_partitioned;
ALTER SEQUENCE webhook_attempts_id_seq OWNED BY webhook_attempts.id;
ALTER TABLE webhook_attempts ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (message_id) REFERENCES webhook_messages (id);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id DESC);
CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""


def _month(moment: datetime, plus: int = 0) -> datetime:
    months = moment.year * 12 + moment.month - 1 + plus
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


def _monthly_partitions(table: str) -> None:
    """One partition per month from the oldest row's month to MONTHS_AHEAD after this one."""
    conn = op.get_bind()
    oldest = conn.execute(text(f"SELECT min(created_at) FROM {table}_unpartitioned")).scalar()
    now = datetime.now(UTC)
    month, last = _month(min(oldest or now, now)), _month(now, MONTHS_AHEAD)
    while month <= last:
        after = _month(month, 1)
        conn.execute(text(
            f"CREATE TABLE {table}_{month:%Y%m} PARTITION OF {table}"
            f" FOR VALUES FROM ('{month.isoformat()}') TO ('{after.isoformat()}')"))
        month = after


def _audit_partition(start: int, end: int) -> None:
    """Records start .. end - 1; a TRUNCATE of the partition itself is refused like the parent's
    (a statement trigger on the parent does not fire for its partitions)."""
    name = f"audit_log_s{start:012d}"
    op.execute(f"CREATE TABLE {name} PARTITION OF audit_log FOR VALUES FROM ({start}) TO ({end})")
    op.execute(f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name}"
               " FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()")


def _audit_partitions() -> None:
    """The records so far in one partition; the next AUDIT_RECORDS_PER_PARTITION after it."""
    head = op.get_bind().execute(text("SELECT seq FROM audit_head")).scalar_one()
    start = 1
    if head >= 1:
        _audit_partition(start, head + 1)
        start = head + 1
    _audit_partition(start, start + AUDIT_RECORDS_PER_PARTITION)


def upgrade() -> None:
    op.execute(AUDIT)
    _audit_partitions()
    op.execute("INSERT INTO audit_log SELECT * FROM audit_log_unpartitioned")
    op.execute(AUDIT_AFTER_COPY)
    for table, before, after in (("outbox_events", OUTBOX, OUTBOX_AFTER_COPY),
                                 ("webhook_attempts", ATTEMPTS, ATTEMPTS_AFTER_COPY)):
        op.execute(before)
        _monthly_partitions(table)
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
        op.execute(after)


def downgrade() -> None:
    op.execute(DOWNGRADE)
