-- Ledger schema. Applied by migration 0001_ledger.
--
-- Money lives in three tables: transactions (one per business operation, keyed by its
-- idempotency key; rejections are stored too), entries (append-only, signed amounts, each with
-- the balance of its balance row after it) and balances (the running totals, updated in the
-- same database transaction as the entries). Hot accounts (house revenue, gateway clearing)
-- have several balance rows ("shards") so concurrent postings do not queue on one row lock;
-- their balance is the sum over their rows and an entry's balance_after is its row's balance.

CREATE TABLE ledger_accounts (
    id           bigserial PRIMARY KEY,
    owner        text NOT NULL,                 -- player:<id> | house | gateway:<provider>
    type         text NOT NULL,                 -- ledger.types.AccountType
    currency     char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    no_negative  boolean NOT NULL,              -- available balance may never go below zero
    shards       smallint NOT NULL DEFAULT 1 CHECK (shards BETWEEN 1 AND 256),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, type, currency)
);

CREATE TABLE ledger_balances (
    account_id       bigint NOT NULL REFERENCES ledger_accounts,
    shard            smallint NOT NULL,
    posted           bigint NOT NULL DEFAULT 0,
    pending_debits   bigint NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),   -- open holds out
    pending_credits  bigint NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),  -- open holds in
    PRIMARY KEY (account_id, shard)
);

CREATE TABLE ledger_transactions (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL,
    request_hash     bytea NOT NULL,
    kind             text NOT NULL,             -- deposit, bet_stake, settlement, hold, hold_post...
    result           text NOT NULL,             -- ledger.types.ResultCode
    reference        text,                      -- business object: deposit id, bet id, ...
    corrects_id      bigint REFERENCES ledger_transactions,  -- resettlement: the corrected one
    hold_id          bigint REFERENCES ledger_transactions,  -- hold post / void: the hold
    shortfall        bigint NOT NULL DEFAULT 0, -- moved to shortfall accounts (player debt)
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_transactions_key UNIQUE (idempotency_key)
);
CREATE INDEX ledger_transactions_reference ON ledger_transactions (reference);

CREATE TABLE ledger_entries (
    id              bigserial PRIMARY KEY,
    transaction_id  bigint NOT NULL REFERENCES ledger_transactions,
    account_id      bigint NOT NULL,
    shard           smallint NOT NULL,
    currency        char(3) NOT NULL,
    amount          bigint NOT NULL CHECK (amount <> 0),
    balance_after   bigint NOT NULL             -- the balance row's posted balance after this
);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, shard, id);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);

-- Two-phase transfers: a hold reserves `amount` (pending debit on the debit account, pending
-- credit on the credit account) until it is posted (all or part) or voided, exactly once.
CREATE TABLE ledger_holds (
    transaction_id     bigint PRIMARY KEY REFERENCES ledger_transactions,
    debit_account_id   bigint NOT NULL REFERENCES ledger_accounts,
    credit_account_id  bigint NOT NULL REFERENCES ledger_accounts,
    currency           char(3) NOT NULL,
    amount             bigint NOT NULL CHECK (amount > 0),
    state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'posted', 'voided')),
    posted_amount      bigint CHECK (posted_amount BETWEEN 0 AND amount),
    resolved_by        bigint REFERENCES ledger_transactions
);

-- Entries and transactions are history: nobody edits or removes them.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
