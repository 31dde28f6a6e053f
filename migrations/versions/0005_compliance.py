"""Compliance gates: geolocation checks, deposit limits (with pending loosenings and the usage
counted against them), self-exclusions and time-outs.

Geolocation checks and exclusions are evidence for the regulator: append-only, like the audit
log (an exclusion can never be shortened, only added to). `responsible_gaming_players` holds one
row per player that every limit check and change locks FOR UPDATE, so a limit check and the
amount it counts commit together and concurrent deposits cannot exceed a limit.
"""

from alembic import op

revision = "0005_compliance"
down_revision = "0004_deposits"

UPGRADE = r"""
CREATE TABLE geolocation_checks (
    id                        text PRIMARY KEY,            -- geo_<hex>
    player_id                 text NOT NULL REFERENCES players (id),
    checked_at                timestamptz NOT NULL,
    latitude                  double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude                 double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    ip_address                inet NOT NULL,
    provider                  text NOT NULL,
    jurisdiction              text,                        -- region holding the device, 'US-NJ'
    distance_to_border_miles  double precision,
    ip_country                text,
    ip_subdivision            text,
    anonymous_flags           text[] NOT NULL DEFAULT '{}',
    allowed                   boolean NOT NULL,
    code                      text NOT NULL,               -- allowed | outside_licensed_jurisdiction | anonymous_ip | ...
    reason                    text NOT NULL,
    valid_until               timestamptz NOT NULL,
    CHECK (allowed = (code = 'allowed'))
);
CREATE INDEX geolocation_checks_player ON geolocation_checks (player_id, checked_at DESC, id DESC);
CREATE TRIGGER geolocation_checks_append_only BEFORE UPDATE OR DELETE ON geolocation_checks
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- The row every responsible-gaming decision about a player locks.
CREATE TABLE responsible_gaming_players (
    player_id   text PRIMARY KEY REFERENCES players (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Deposit limits in force, per currency and rolling window.
CREATE TABLE deposit_limits (
    player_id   text NOT NULL REFERENCES responsible_gaming_players (player_id),
    currency    text NOT NULL,
    period      text NOT NULL CHECK (period IN ('day', 'week', 'month')),
    amount      bigint NOT NULL CHECK (amount > 0),     -- minor units
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (player_id, currency, period)
);

-- Requested loosenings waiting for their cool-off (and the history of applied/superseded ones).
CREATE TABLE deposit_limit_changes (
    id            bigserial PRIMARY KEY,
    player_id     text NOT NULL REFERENCES responsible_gaming_players (player_id),
    currency      text NOT NULL,
    period        text NOT NULL CHECK (period IN ('day', 'week', 'month')),
    amount        bigint CHECK (amount IS NULL OR amount > 0),   -- NULL: remove the limit
    requested_at  timestamptz NOT NULL,
    effective_at  timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'superseded')),
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX deposit_limit_changes_one_pending
    ON deposit_limit_changes (player_id, currency, period) WHERE status = 'pending';

-- What each deposit counted against the limits (one row per deposit: the idempotency key).
CREATE TABLE deposit_limit_usage (
    deposit_id   text PRIMARY KEY,
    player_id    text NOT NULL REFERENCES responsible_gaming_players (player_id),
    currency     text NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    status       text NOT NULL CHECK (status IN ('reserved', 'released', 'rejected')),
    code         text NOT NULL,                          -- allowed | deposit_limit_exceeded | self_excluded | ...
    reason       text NOT NULL,
    reserved_at  timestamptz NOT NULL,
    released_at  timestamptz
);
CREATE INDEX deposit_limit_usage_window
    ON deposit_limit_usage (player_id, currency, reserved_at) WHERE status = 'reserved';

CREATE TABLE player_exclusions (
    id          text PRIMARY KEY,                        -- exc_<hex>
    player_id   text NOT NULL REFERENCES players (id),
    kind        text NOT NULL CHECK (kind IN ('self_exclusion', 'time_out')),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,                             -- NULL: permanent
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX player_exclusions_player ON player_exclusions (player_id, starts_at);
CREATE TRIGGER player_exclusions_append_only BEFORE UPDATE OR DELETE ON player_exclusions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""

DOWNGRADE = """
DROP TABLE player_exclusions;
DROP TABLE deposit_limit_usage;
DROP TABLE deposit_limit_changes;
DROP TABLE deposit_limits;
DROP TABLE responsible_gaming_players;
DROP TABLE geolocation_checks;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
