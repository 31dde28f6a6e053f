-- ledger_post, fewer statements per posting (issue 16). Applied by migration 0019_ledger_posting,
-- which replaces the definition of 0001 (ledger/sql/functions.sql); its downgrade restores that.
--
-- Same arguments, same result columns, same rules as before (functions.sql: locking rule,
-- idempotency rule, funds and shortfall, stored rejections). What changed is the work per call:
--   1. one statement reads the key's prior transaction, resolves the legs' accounts (and the
--      transfer's shape) and, when the key is new, locks the single-row balance rows in
--      ascending account id, reading their available balances;
--   2. per hot account, one statement tries the session's own balance row with SKIP LOCKED; only
--      when another session holds it does it search the others (then waits as before);
--   3. one statement inserts the transaction, moves the balance rows and writes the entries
--      (a rejection: only the transaction row).
-- A posting between single-row accounts is 2 statements, one touching a hot account 3.
-- Legs live in parallel scalar arrays (no composite arrays to take apart in PL/pgSQL), and the
-- result goes out through the OUT parameters (RETURN NEXT) instead of a query.
CREATE OR REPLACE FUNCTION ledger_post(p_key text, p_hash bytea, p_kind text, p_reference text,
                                       p_corrects text, p_metadata jsonb, p_legs jsonb)
RETURNS TABLE (result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_prior_id     bigint;
    v_prior_hash   bytea;
    v_prior_result text;
    v_prior_short  bigint;
    v_count        int;
    v_legs_given   int := jsonb_array_length(p_legs);
    v_total        bigint;
    v_one_currency boolean;
    v_missing      bigint;
    v_ids          bigint[];
    v_shards       smallint[];
    v_no_negative  boolean[];
    v_amounts      bigint[];
    v_shortfall_to bigint[];
    v_currency     char(3);
    v_row_shards   smallint[];
    v_locked       bigint[];
    v_available_of bigint[];
    v_available    bigint;
    v_cover        bigint;
    v_start        int;
    v_shard        smallint;
    v_pos          int;
    v_result       text := 'ok';
    v_shortfall    bigint := 0;
    v_tx           bigint;
BEGIN
    -- 1. The key's prior outcome, the legs' accounts, and (no prior outcome) the lock on the
    -- single-row accounts' balance rows (legs and shortfall accounts) in ascending account id,
    -- with their available balances. Missing accounts are created first time round.
    FOR attempt IN 1 .. 2 LOOP
        SELECT p.id, p.request_hash, p.result, p.shortfall,
               r.n, r.total, r.one_currency, r.missing, r.ids, r.shards, r.no_negative,
               r.amounts, r.shortfall_to, r.currency, k.locked, k.available
          INTO v_prior_id, v_prior_hash, v_prior_result, v_prior_short,
               v_count, v_total, v_one_currency, v_missing, v_ids, v_shards, v_no_negative,
               v_amounts, v_shortfall_to, v_currency, v_locked, v_available_of
          FROM (SELECT count(a.id)::int AS n, sum(x.amount)::bigint AS total,
                       min(a.currency) = max(a.currency) AS one_currency,
                       count(*) FILTER (WHERE a.id IS NULL
                                           OR (x.sf_owner IS NOT NULL AND sf.id IS NULL)) AS missing,
                       array_agg(a.id) AS ids, array_agg(a.shards) AS shards,
                       array_agg(a.no_negative) AS no_negative, array_agg(x.amount) AS amounts,
                       array_agg(sf.id) AS shortfall_to,
                       array_agg(a.id) FILTER (WHERE a.shards = 1)
                       || coalesce(array_agg(sf.id) FILTER (WHERE sf.id IS NOT NULL), '{}') AS plain,
                       min(a.currency) AS currency
                  FROM jsonb_to_recordset(p_legs)
                       AS x(owner text, type text, currency text, amount bigint, sf_owner text, sf_type text)
                  LEFT JOIN ledger_accounts a
                         ON a.owner = x.owner AND a.type = x.type AND a.currency = x.currency
                  LEFT JOIN ledger_accounts sf
                         ON sf.owner = x.sf_owner AND sf.type = x.sf_type AND sf.currency = x.currency) r
          LEFT JOIN ledger_transactions p ON p.idempotency_key = p_key
          LEFT JOIN LATERAL (
                SELECT array_agg(l.account_id) AS locked, array_agg(l.available) AS available
                  FROM (SELECT b.account_id, b.posted - b.pending_debits AS available
                          FROM ledger_balances b
                         WHERE p.id IS NULL AND b.shard = 0 AND b.account_id = ANY(r.plain)
                         ORDER BY b.account_id FOR UPDATE OF b) l) k ON true;
        IF v_prior_id IS NOT NULL THEN
            result := CASE WHEN v_prior_hash = p_hash THEN v_prior_result ELSE 'conflict' END;
            transaction_id := v_prior_id; replayed := true; shortfall := v_prior_short;
            RETURN NEXT;
            RETURN;
        END IF;
        EXIT WHEN v_missing = 0 OR attempt = 2;
        PERFORM ledger_ensure_accounts(p_legs);
    END LOOP;
    -- The application validated the transfer; the database checks again, cheaply: a transfer
    -- moves one currency, has >= 2 legs on known accounts and sums to zero.
    IF v_count < 2 OR v_count <> v_legs_given OR v_missing <> 0 OR NOT v_one_currency
       OR v_total IS DISTINCT FROM 0 THEN
        RAISE EXCEPTION 'ledger_post %: a transfer needs >= 2 legs in one currency summing to zero', p_key
            USING ERRCODE = 'check_violation';
    END IF;

    -- 2. Then a row of each hot account: the session's own row if it is free, else any free
    -- row (searched from the session's offset), else wait for the session's own row.
    v_row_shards := array_fill(0::smallint, ARRAY[v_count]);
    FOR i IN 1 .. v_count LOOP
        IF v_shards[i] > 1 THEN
            v_start := pg_backend_pid() % v_shards[i];
            SELECT b.shard INTO v_shard FROM ledger_balances b
             WHERE b.account_id = v_ids[i] AND b.shard = v_start FOR UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                SELECT b.shard INTO v_shard FROM ledger_balances b
                 WHERE b.account_id = v_ids[i]
                 ORDER BY (b.shard - v_start + v_shards[i]) % v_shards[i]
                 LIMIT 1 FOR UPDATE SKIP LOCKED;
                IF NOT FOUND THEN
                    SELECT b.shard INTO v_shard FROM ledger_balances b
                     WHERE b.account_id = v_ids[i] AND b.shard = v_start FOR UPDATE;
                END IF;
            END IF;
            v_row_shards[i] := v_shard;
        END IF;
    END LOOP;

    -- Funds: a debit may not take a no-negative account's available balance below zero; the
    -- part it cannot cover goes to the leg's shortfall account when it names one. (No-negative
    -- accounts are never hot: their one row was locked above.)
    FOR i IN 1 .. v_count LOOP
        IF v_amounts[i] < 0 AND v_no_negative[i] THEN
            v_available := v_available_of[array_position(v_locked, v_ids[i])];
            IF v_available + v_amounts[i] < 0 THEN
                IF v_shortfall_to[i] IS NULL THEN
                    v_result := 'insufficient_funds';
                ELSE
                    v_cover := greatest(v_available, 0);
                    v_shortfall := v_shortfall + (-v_amounts[i] - v_cover);
                    -- the uncovered part moves to the shortfall account (one entry per row)
                    v_pos := array_position(v_ids, v_shortfall_to[i]);
                    IF v_pos IS NULL THEN
                        v_ids := v_ids || v_shortfall_to[i];
                        v_amounts := v_amounts || (v_amounts[i] + v_cover);
                        v_row_shards := v_row_shards || 0::smallint;
                    ELSE
                        v_amounts[v_pos] := v_amounts[v_pos] + (v_amounts[i] + v_cover);
                    END IF;
                    v_amounts[i] := -v_cover;
                END IF;
            END IF;
        END IF;
    END LOOP;
    IF v_result <> 'ok' THEN
        v_shortfall := 0;
    END IF;

    -- 3. The transaction row; when it is new and accepted, the balance rows and the entries.
    -- A concurrent request that committed this key meanwhile leaves no row to insert: then
    -- nothing moves and its stored outcome is replayed below.
    WITH tx AS (
        INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, reference,
                                         corrects_id, shortfall, metadata)
        VALUES (p_key, p_hash, p_kind, v_result, p_reference,
                (SELECT c.id FROM ledger_transactions c WHERE c.idempotency_key = p_corrects),
                v_shortfall, coalesce(p_metadata, '{}'))
        ON CONFLICT ON CONSTRAINT ledger_transactions_key DO NOTHING
        RETURNING id
    ), moved AS (
        UPDATE ledger_balances b SET posted = b.posted + m.amount
          FROM tx, unnest(v_ids, v_row_shards, v_amounts) AS m(account_id, shard, amount)
         WHERE v_result = 'ok' AND m.amount <> 0
           AND b.account_id = m.account_id AND b.shard = m.shard
        RETURNING tx.id AS tx_id, b.account_id, b.shard, m.amount, b.posted
    ), written AS (
        INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
        SELECT m.tx_id, m.account_id, m.shard, v_currency, m.amount, m.posted
          FROM moved m ORDER BY m.account_id, m.shard
    )
    SELECT tx.id INTO v_tx FROM tx;
    IF v_tx IS NULL THEN
        SELECT t.id, t.request_hash, t.result, t.shortfall
          INTO v_prior_id, v_prior_hash, v_prior_result, v_prior_short
          FROM ledger_transactions t WHERE t.idempotency_key = p_key;
        result := CASE WHEN v_prior_hash = p_hash THEN v_prior_result ELSE 'conflict' END;
        transaction_id := v_prior_id; replayed := true; shortfall := v_prior_short;
        RETURN NEXT;
        RETURN;
    END IF;
    result := v_result; transaction_id := v_tx; replayed := false; shortfall := v_shortfall;
    RETURN NEXT;
END $$;

-- Plans: generic (planned once per session), by key (no sequential scans) and nested loops
-- only: every statement here touches a handful of rows by key. A generic plan over JSON rows
-- whose count the planner cannot know otherwise picks hash joins that read and hash every
-- account (or balance row) on every call; and ledger_post_many's fallback, which calls this
-- function, turns nested loops off for its own statements (a setting the callee inherits).
ALTER FUNCTION ledger_post(text, bytea, text, text, text, jsonb, jsonb)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_nestloop = on
    SET enable_hashjoin = off SET enable_mergejoin = off;
