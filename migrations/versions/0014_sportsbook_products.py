"""Sportsbook products (issue 15): cash-out, free bets, bonus funds with wagering, market
cancellation (UOF BetCancel / RollbackBetCancel).

Money never lives here either: free bets, bonus funds and their stakes are ledger accounts
(ledger/types.py: player_free_bet, free_bets_in_play, player_bonus, house_promotions); these
tables say who granted what, on which terms, and which bet a posting belongs to.

- bets: how the stake was funded (`funding` cash | free_bet; `stake_bonus` its part from bonus
  funds, `bonus_id` the bonus active when it was placed, `bonus_wagered` once it counted towards
  that bonus's wagering), what its settlement returned beyond cash (`paid_bonus`,
  `returned_free_bet`), what was cashed out (`cashed_out_stake`, `cashed_out_bonus`,
  `cashed_out_value`, `cash_outs`), and the market cancellation that refunded it. Two more
  statuses: `cashed_out` (final) and `cancelled`.
- bet_settlements: the history keeps cash-outs, their reversals, cancellations and their
  rollbacks beside settlements (`version` is then the cash-out's number or the cancellation id);
  one row per (bet, kind, version, ledger key), since a bet whose cancellation was rolled back
  is settled again on the same version under a new key.
- bet_cash_outs: each cash-out with the betting engine's quote (id, value, expiry); a quote id
  is used once per bet (a retried request replays).
- free_bet_grants, bonuses (one active bonus per player and currency), deposit_match_offers
  (a partner's deposit-match promotion), market_cancellations (a BetCancel: reason code,
  optional placement window, rolled back or not).
"""

from alembic import op

revision = "0014_sportsbook_products"
down_revision = "0013_partner_api"

UPGRADE = r"""
CREATE TABLE free_bet_grants (
    id            text PRIMARY KEY,               -- the operator's or the promotion's grant id
    player_id     text NOT NULL REFERENCES players (id),
    partner_id    text NOT NULL,
    currency      char(3) NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    reason        text NOT NULL,
    request_hash  bytea NOT NULL,                 -- a retried grant replays, another conflicts
    granted_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX free_bet_grants_player ON free_bet_grants (player_id, created_at);

CREATE TABLE bonuses (
    id                    text PRIMARY KEY,
    player_id             text NOT NULL REFERENCES players (id),
    partner_id            text NOT NULL,
    currency              char(3) NOT NULL,
    amount                bigint NOT NULL CHECK (amount > 0),
    source                text NOT NULL CHECK (source IN ('deposit_match', 'promotion')),
    source_ref            text,                   -- the matched deposit
    wagering_requirement  bigint NOT NULL CHECK (wagering_requirement >= 0),
    wagered               bigint NOT NULL DEFAULT 0 CHECK (wagered >= 0),
    min_odds_num          bigint NOT NULL CHECK (min_odds_num > 0),
    min_odds_den          bigint NOT NULL CHECK (min_odds_den > 0),
    status                text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'converted', 'forfeited')),
    expires_at            timestamptz NOT NULL,
    converted_amount      bigint,                 -- bonus funds that became cash
    forfeited_amount      bigint,                 -- bonus funds the house took back
    forfeit_reason        text,                   -- expired | withdrawal | operator
    request_hash          bytea NOT NULL,
    created_by            text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    closed_at             timestamptz,
    CHECK ((status = 'active') = (closed_at IS NULL))
);
CREATE UNIQUE INDEX bonuses_one_active ON bonuses (player_id, currency) WHERE status = 'active';
CREATE UNIQUE INDEX bonuses_one_deposit_match ON bonuses (player_id) WHERE source = 'deposit_match';

CREATE TABLE deposit_match_offers (
    partner_id           text PRIMARY KEY,
    percent              integer NOT NULL CHECK (percent BETWEEN 1 AND 1000),
    max_amount           bigint NOT NULL CHECK (max_amount > 0),  -- in the deposit's currency
    wagering_multiplier  integer NOT NULL CHECK (wagering_multiplier >= 0),
    min_odds_num         bigint NOT NULL CHECK (min_odds_num > 0),
    min_odds_den         bigint NOT NULL CHECK (min_odds_den > 0),
    valid_days           integer NOT NULL CHECK (valid_days > 0),
    active               boolean NOT NULL,
    updated_by           text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE market_cancellations (
    id              bigserial PRIMARY KEY,        -- part of the refunds' ledger keys
    market_id       text NOT NULL,
    external_id     text NOT NULL,                -- the feed's / operator's id (replay key)
    reason_code     text NOT NULL,                -- UOF void_reason
    reason          text,
    placed_from     timestamptz,                  -- only bets placed in [from, until)
    placed_until    timestamptz,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'rolled_back')),
    bets_cancelled  integer NOT NULL DEFAULT 0,
    request_hash    bytea NOT NULL,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rolled_back_by  text,
    rolled_back_at  timestamptz,
    UNIQUE (market_id, external_id),
    CHECK (placed_from IS NULL OR placed_until IS NULL OR placed_from < placed_until)
);

ALTER TABLE bets
    ADD COLUMN funding            text NOT NULL DEFAULT 'cash'
                                  CHECK (funding IN ('cash', 'free_bet')),
    ADD COLUMN stake_bonus        bigint NOT NULL DEFAULT 0,
    ADD COLUMN bonus_id           text REFERENCES bonuses (id),
    ADD COLUMN bonus_wagered      boolean NOT NULL DEFAULT false,
    ADD COLUMN paid_bonus         bigint NOT NULL DEFAULT 0,
    ADD COLUMN returned_free_bet  bigint NOT NULL DEFAULT 0 CHECK (returned_free_bet >= 0),
    ADD COLUMN cashed_out_stake   bigint NOT NULL DEFAULT 0,
    ADD COLUMN cashed_out_bonus   bigint NOT NULL DEFAULT 0,
    ADD COLUMN cashed_out_value   bigint NOT NULL DEFAULT 0 CHECK (cashed_out_value >= 0),
    ADD COLUMN cash_outs          integer NOT NULL DEFAULT 0 CHECK (cash_outs >= 0),
    ADD COLUMN cancellation_id    bigint REFERENCES market_cancellations (id),
    ADD CONSTRAINT bets_stake_bonus CHECK (stake_bonus BETWEEN 0 AND stake),
    ADD CONSTRAINT bets_free_bet_has_no_bonus CHECK (funding = 'cash' OR stake_bonus = 0),
    ADD CONSTRAINT bets_cashed_out_stake
        CHECK (cashed_out_stake BETWEEN 0 AND stake
               AND cashed_out_bonus BETWEEN 0 AND least(cashed_out_stake, stake_bonus)),
    ADD CONSTRAINT bets_cashed_out_is_whole
        CHECK ((status = 'cashed_out') = (cashed_out_stake = stake AND stake > 0));
ALTER TABLE bets DROP CONSTRAINT bets_status_check;
ALTER TABLE bets ADD CONSTRAINT bets_status_check
    CHECK (status IN ('open', 'settled', 'rejected', 'cashed_out', 'cancelled'));
CREATE INDEX bets_bonus ON bets (bonus_id) WHERE bonus_id IS NOT NULL;

ALTER TABLE bet_settlements DROP CONSTRAINT bet_settlements_kind_check;
ALTER TABLE bet_settlements ADD CONSTRAINT bet_settlements_kind_check
    CHECK (kind IN ('settlement', 'resettlement', 'rollback', 'cash_out', 'cash_out_reversal',
                    'cancellation', 'cancellation_rollback'));
-- A bet whose cancellation is rolled back is settled again on the same result version under a
-- new ledger key (its next rollback generation): the history keeps one row per posting.
ALTER TABLE bet_settlements DROP CONSTRAINT bet_settlements_pkey;
CREATE UNIQUE INDEX bet_settlements_one_per_posting
    ON bet_settlements (bet_id, kind, version, coalesce(ledger_key, ''));

CREATE TABLE bet_cash_outs (
    bet_id            text NOT NULL REFERENCES bets (id),
    seq               integer NOT NULL CHECK (seq > 0),   -- 1, 2, ... per bet
    quote_id          text NOT NULL,
    quote_expires_at  timestamptz NOT NULL,
    stake             bigint NOT NULL CHECK (stake > 0),  -- the share of the stake cashed out
    stake_bonus       bigint NOT NULL DEFAULT 0 CHECK (stake_bonus >= 0),
    value             bigint NOT NULL CHECK (value >= 0),
    value_bonus       bigint NOT NULL DEFAULT 0 CHECK (value_bonus BETWEEN 0 AND value),
    ledger_key        text NOT NULL,
    request_hash      bytea NOT NULL,
    state             text NOT NULL DEFAULT 'done' CHECK (state IN ('done', 'reversed')),
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    reversed_by       text,
    reversed_at       timestamptz,
    reversal_reason   text,
    PRIMARY KEY (bet_id, seq),
    UNIQUE (bet_id, quote_id)
);
"""

DOWNGRADE = """
DROP TABLE bet_cash_outs;
DROP INDEX bet_settlements_one_per_posting;
ALTER TABLE bet_settlements ADD PRIMARY KEY (bet_id, kind, version);
ALTER TABLE bet_settlements DROP CONSTRAINT bet_settlements_kind_check;
ALTER TABLE bet_settlements ADD CONSTRAINT bet_settlements_kind_check
    CHECK (kind IN ('settlement', 'resettlement', 'rollback'));
DROP INDEX bets_bonus;
ALTER TABLE bets DROP CONSTRAINT bets_status_check;
ALTER TABLE bets ADD CONSTRAINT bets_status_check CHECK (status IN ('open', 'settled', 'rejected'));
ALTER TABLE bets DROP CONSTRAINT bets_cashed_out_is_whole, DROP CONSTRAINT bets_cashed_out_stake,
                 DROP CONSTRAINT bets_free_bet_has_no_bonus, DROP CONSTRAINT bets_stake_bonus,
                 DROP COLUMN cancellation_id, DROP COLUMN cash_outs,
                 DROP COLUMN cashed_out_value, DROP COLUMN cashed_out_bonus,
                 DROP COLUMN cashed_out_stake, DROP COLUMN returned_free_bet,
                 DROP COLUMN paid_bonus, DROP COLUMN bonus_wagered, DROP COLUMN bonus_id,
                 DROP COLUMN stake_bonus, DROP COLUMN funding;
DROP TABLE market_cancellations;
DROP TABLE deposit_match_offers;
DROP TABLE bonuses;
DROP TABLE free_bet_grants;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
