"""Platform tables: players, the hash-chained audit log, the domain-event outbox."""

from alembic import op

revision = "0002_platform"
down_revision = "0001_ledger"

UPGRADE = r"""
CREATE TABLE players (
    id              text PRIMARY KEY,
    partner_id      text NOT NULL,              -- tenant: the partner that owns the player
    external_ref    text,                       -- the partner's own id for the player
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text,
    date_of_birth   date,
    jurisdiction    text,                       -- e.g. 'US-NJ'
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, external_ref)
);
CREATE INDEX players_partner ON players (partner_id);

-- The audit chain. audit_head holds the newest hash; audit_append locks it, so records are
-- chained in commit order and the chain never forks.
CREATE TABLE audit_log (
    seq         bigint PRIMARY KEY,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    record      text NOT NULL,                  -- canonical JSON: who, what, before/after, when
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created ON audit_log (created_at);
CREATE TABLE audit_head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq   bigint NOT NULL,
    hash  bytea NOT NULL
);
INSERT INTO audit_head VALUES (true, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_append(p_record text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint; v_prev bytea; v_hash bytea;
BEGIN
    SELECT seq, hash INTO v_seq, v_prev FROM audit_head FOR UPDATE;
    v_seq := v_seq + 1;
    v_hash := sha256(v_prev || convert_to(p_record, 'UTF8'));
    INSERT INTO audit_log (seq, prev_hash, hash, record) VALUES (v_seq, v_prev, v_hash, p_record);
    UPDATE audit_head SET seq = v_seq, hash = v_hash;
    RETURN v_seq;
END $$;

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE TABLE outbox_events (
    id              bigserial PRIMARY KEY,
    event_type      text NOT NULL,              -- e.g. deposit.succeeded
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    player_id       text,
    partner_id      text,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox_events (id) WHERE published_at IS NULL;
CREATE INDEX outbox_aggregate ON outbox_events (aggregate_type, aggregate_id);
"""

DOWNGRADE = """
DROP TABLE outbox_events;
DROP TABLE audit_log; DROP TABLE audit_head;
DROP FUNCTION audit_append(text); DROP FUNCTION refuse_change();
DROP TABLE players;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
