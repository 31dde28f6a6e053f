"""Bets and their settlement: bets, legs, versioned market results, every settlement version.

Money never lives here: stakes and payouts are ledger transactions (keys `bet:<id>:stake`,
`bet:<id>:v<version>`, `bet:<id>:rollback:v<version>`); these tables say which bet they
belong to and why. Settlement rows are history: one per (bet, kind, version), never updated.
"""

from alembic import op

revision = "0007_bets"
down_revision = "0006_kyc_withdrawals"

UPGRADE = r"""
CREATE TABLE bets (
    id              text PRIMARY KEY,             -- the betting engine's bet id
    player_id       text NOT NULL REFERENCES players (id),
    currency        char(3) NOT NULL,
    stake           bigint NOT NULL CHECK (stake > 0),     -- minor units, all parts together
    bet_type        text NOT NULL CHECK (bet_type IN ('single', 'parlay', 'each_way')),
    place_fraction  text,                         -- each-way terms: "1/5" of the odds ...
    place_count     smallint,                     -- ... for this many places
    status          text NOT NULL CHECK (status IN ('open', 'settled', 'rejected')),
    reject_code     text,                         -- why a rejected bet was refused
    reject_reason   text,
    paid            bigint NOT NULL DEFAULT 0,    -- net returned to the player by settlements
    payout          bigint,                       -- the return under the current results
    version         integer,                      -- settlement version of `paid`
    settlement_key  text,                         -- ledger key corrections link to
    request_hash    bytea NOT NULL,               -- POST /v1/bets replay vs conflict
    placed_at       timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((bet_type = 'each_way') = (place_fraction IS NOT NULL AND place_count IS NOT NULL)),
    CHECK ((status = 'rejected') = (reject_code IS NOT NULL))
);
CREATE INDEX bets_player ON bets (player_id, placed_at);

CREATE TABLE bet_legs (
    bet_id        text NOT NULL REFERENCES bets (id),
    leg_no        smallint NOT NULL,
    market_id     text NOT NULL,
    selection_id  text NOT NULL,
    odds          text NOT NULL,                  -- as offered: "10/1", "+150", "2.50"
    odds_format   text NOT NULL CHECK (odds_format IN ('decimal', 'fractional', 'american')),
    price_num     bigint NOT NULL CHECK (price_num > 0),   -- the exact decimal price
    price_den     bigint NOT NULL CHECK (price_den > 0),
    PRIMARY KEY (bet_id, leg_no)
);
-- Settlement walks a market's bets in bet id order (the batch cursor).
CREATE INDEX bet_legs_market ON bet_legs (market_id, bet_id);

-- Every result version a feed sent; exactly one `current` per market (none after a rollback).
CREATE TABLE market_results (
    market_id    text NOT NULL,
    version      integer NOT NULL CHECK (version > 0),
    selections   jsonb NOT NULL,                  -- selection id -> SelectionResult JSON
    status       text NOT NULL DEFAULT 'current'
                 CHECK (status IN ('current', 'superseded', 'rolled_back')),
    received_at  timestamptz NOT NULL DEFAULT now(),
    received_by  text NOT NULL,
    PRIMARY KEY (market_id, version)
);
CREATE UNIQUE INDEX market_results_one_current ON market_results (market_id) WHERE status = 'current';

-- Where a market's settlement stands (one row per market, the run in progress or last done).
CREATE TABLE market_settlements (
    market_id         text PRIMARY KEY,
    version           integer NOT NULL,           -- result version being applied / rolled back
    state             text NOT NULL CHECK (state IN ('settling', 'settled', 'resettling',
                                                     'rolling_back', 'rolled_back')),
    workflow_id       text NOT NULL,
    bets_processed    integer NOT NULL DEFAULT 0, -- by the current run
    bets_posted       integer NOT NULL DEFAULT 0, -- ledger postings made by the current run
    first_settled_at  timestamptz,                -- start of the correction window
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every version of every bet's settlement, kept forever.
CREATE TABLE bet_settlements (
    bet_id          text NOT NULL REFERENCES bets (id),
    kind            text NOT NULL CHECK (kind IN ('settlement', 'resettlement', 'rollback')),
    version         integer NOT NULL,
    market_id       text NOT NULL,                -- the market whose result (or rollback) triggered it
    payout          bigint NOT NULL,              -- the return these results give (rollback: 0)
    delta           bigint NOT NULL,              -- moved to (+) or from (-) the player
    applied         boolean NOT NULL,             -- false: upgrade_only kept a downgrade out
    outcome         text NOT NULL,                -- won, lost, void, partial, rolled_back
    ledger_key      text,
    transaction_id  bigint,
    shortfall       bigint NOT NULL DEFAULT 0,    -- clawback part that went to player debt
    results         jsonb NOT NULL,               -- the leg results used
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bet_id, kind, version)
);
CREATE TRIGGER bet_settlements_append_only BEFORE UPDATE OR DELETE ON bet_settlements
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER market_results_no_delete BEFORE DELETE ON market_results
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
"""

DOWNGRADE = """
DROP TABLE bet_settlements; DROP TABLE market_settlements; DROP TABLE market_results;
DROP TABLE bet_legs; DROP TABLE bets;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
