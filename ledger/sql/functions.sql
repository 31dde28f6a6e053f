-- Ledger posting functions: each posting is ONE round trip from the application.
--
-- Locking rule (deadlock freedom): a posting first locks the single-row balance rows it
-- touches in ascending account id, then takes one balance row of each hot account with
-- SKIP LOCKED (it never waits there unless every row of that account is taken). A hold is
-- locked before the balance rows it moves. Deadlocks and serialization failures that remain
-- possible across several postings in one caller transaction are retried by the caller
-- (settlepay.db.run_in_transaction).
--
-- Idempotency rule: a transaction row is keyed by its idempotency key under a unique index.
-- A key seen before returns the stored outcome (replayed), or 'conflict' when the request hash
-- differs. Rejections are stored as transaction rows without entries, so they replay too.

CREATE TYPE ledger_leg AS (
    account_id            bigint,
    shard                 smallint,
    shards                smallint,
    no_negative           boolean,
    amount                bigint,
    currency              char(3),
    shortfall_account_id  bigint
);

-- Create the accounts named by legs (and their shortfall accounts) that do not exist yet,
-- with one balance row per shard.
CREATE FUNCTION ledger_ensure_accounts(p_legs jsonb) RETURNS void LANGUAGE sql AS $$
    WITH wanted AS (
        SELECT x.owner, x.type, x.currency, x.no_negative, x.shards
          FROM jsonb_to_recordset(p_legs)
               AS x(owner text, type text, currency text, no_negative boolean, shards smallint)
        UNION
        SELECT x.sf_owner, x.sf_type, x.currency, false, 1::smallint
          FROM jsonb_to_recordset(p_legs) AS x(currency text, sf_owner text, sf_type text)
         WHERE x.sf_owner IS NOT NULL
    ), missing AS (
        SELECT w.* FROM wanted w
         WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts a
                            WHERE a.owner = w.owner AND a.type = w.type AND a.currency = w.currency)
    ), created AS (
        INSERT INTO ledger_accounts (owner, type, currency, no_negative, shards)
        SELECT owner, type, currency, no_negative, shards FROM missing
        ON CONFLICT DO NOTHING
        RETURNING id, shards
    )
    INSERT INTO ledger_balances (account_id, shard)
    SELECT id, s FROM created, generate_series(0, shards - 1) AS s;
$$;

-- Lock one free balance row of a hot account, starting the search at a per-session offset so
-- concurrent sessions spread over the rows; wait only when every row is taken.
CREATE FUNCTION ledger_lock_hot_shard(p_account bigint, p_shards smallint) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    v_start int := pg_backend_pid() % p_shards;
    v_shard smallint;
BEGIN
    SELECT b.shard INTO v_shard FROM ledger_balances b
     WHERE b.account_id = p_account
     ORDER BY (b.shard - v_start + p_shards) % p_shards
     LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF v_shard IS NULL THEN
        SELECT b.shard INTO v_shard FROM ledger_balances b
         WHERE b.account_id = p_account AND b.shard = v_start FOR UPDATE;
    END IF;
    RETURN v_shard;
END $$;

-- A concurrent request committed a key of this batch after the batch looked: the caller's
-- transaction starts over (serialization failure is retried by settlepay.db), and then replays it.
CREATE FUNCTION ledger_raced(p_key text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_post_many: concurrent request with idempotency key %', p_key
        USING ERRCODE = 'serialization_failure';
END $$;

CREATE FUNCTION ledger_replay(p_prior ledger_transactions, p_hash bytea)
RETURNS TABLE (result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE sql AS $$
    SELECT CASE WHEN p_prior.request_hash = p_hash THEN p_prior.result ELSE 'conflict' END,
           p_prior.id, true, p_prior.shortfall;
$$;

-- One balanced transaction. p_legs: [{owner, type, currency, amount, no_negative, shards,
-- sf_owner, sf_type}] with signed amounts summing to zero per currency (checked again here).
CREATE FUNCTION ledger_post(p_key text, p_hash bytea, p_kind text, p_reference text,
                            p_corrects text, p_metadata jsonb, p_legs jsonb)
RETURNS TABLE (result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_prior      ledger_transactions;
    v_legs       ledger_leg[];
    v_leg        ledger_leg;
    v_final      ledger_leg[] := '{}';
    v_result     text := 'ok';
    v_shortfall  bigint := 0;
    v_available  bigint;
    v_cover      bigint;
    v_corrects   bigint;
    v_tx         bigint;
    v_missing    bigint;
    v_total      bigint;
    v_locked     bigint[];
    v_available_of bigint[];
    v_start      int;
BEGIN
    SELECT * INTO v_prior FROM ledger_transactions t WHERE t.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT * FROM ledger_replay(v_prior, p_hash);
        RETURN;
    END IF;

    -- Resolve the legs' accounts; create the missing ones first time round only.
    FOR attempt IN 1 .. 2 LOOP
        SELECT array_agg(ROW(a.id, 0, a.shards, a.no_negative, x.amount, a.currency, sf.id)::ledger_leg
                         ORDER BY a.id),
               count(*) FILTER (WHERE x.sf_owner IS NOT NULL AND sf.id IS NULL)
          INTO v_legs, v_missing
          FROM jsonb_to_recordset(p_legs)
               AS x(owner text, type text, currency text, amount bigint, sf_owner text, sf_type text)
          JOIN ledger_accounts a ON a.owner = x.owner AND a.type = x.type AND a.currency = x.currency
          LEFT JOIN ledger_accounts sf
                 ON sf.owner = x.sf_owner AND sf.type = x.sf_type AND sf.currency = x.currency;
        EXIT WHEN v_missing = 0 AND coalesce(array_length(v_legs, 1), 0) = jsonb_array_length(p_legs);
        EXIT WHEN attempt = 2;
        PERFORM ledger_ensure_accounts(p_legs);
    END LOOP;
    -- The application validated the transfer; the database checks again, cheaply: a transfer
    -- moves one currency, has >= 2 legs on known accounts and sums to zero.
    v_total := 0;
    FOR i IN 1 .. coalesce(array_length(v_legs, 1), 0) LOOP
        v_total := v_total + v_legs[i].amount;
        IF v_legs[i].currency <> v_legs[1].currency THEN
            v_total := NULL;
        END IF;
    END LOOP;
    IF coalesce(array_length(v_legs, 1), 0) < 2 OR array_length(v_legs, 1) <> jsonb_array_length(p_legs)
       OR v_total IS DISTINCT FROM 0 THEN
        RAISE EXCEPTION 'ledger_post %: a transfer needs >= 2 legs in one currency summing to zero', p_key
            USING ERRCODE = 'check_violation';
    END IF;

    -- Lock: single-row accounts (legs and shortfall accounts) in account id order, reading
    -- their available balances on the way...
    SELECT array_agg(l.account_id ORDER BY l.account_id), array_agg(l.available ORDER BY l.account_id)
      INTO v_locked, v_available_of
      FROM (SELECT b.account_id, b.posted - b.pending_debits AS available
              FROM ledger_balances b
             WHERE b.shard = 0 AND b.account_id IN (
                       SELECT u.account_id FROM unnest(v_legs) u WHERE u.shards = 1
                       UNION SELECT u.shortfall_account_id FROM unnest(v_legs) u
                              WHERE u.shortfall_account_id IS NOT NULL)
             ORDER BY b.account_id FOR UPDATE) l;
    -- ...then any free row of each hot account, starting at a per-session offset so concurrent
    -- sessions spread over the rows; wait only when every row is taken.
    FOR i IN 1 .. array_length(v_legs, 1) LOOP
        v_leg := v_legs[i];
        IF v_leg.shards > 1 THEN
            v_start := pg_backend_pid() % v_leg.shards;
            SELECT b.shard INTO v_leg.shard FROM ledger_balances b
             WHERE b.account_id = v_leg.account_id
             ORDER BY (b.shard - v_start + v_leg.shards) % v_leg.shards
             LIMIT 1 FOR UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                SELECT b.shard INTO v_leg.shard FROM ledger_balances b
                 WHERE b.account_id = v_leg.account_id AND b.shard = v_start FOR UPDATE;
            END IF;
            v_legs[i] := v_leg;
        END IF;
    END LOOP;

    -- Funds: a debit may not take a no-negative account's available balance below zero; the
    -- part it cannot cover goes to the leg's shortfall account when it names one. (No-negative
    -- accounts are never hot: their one row was locked above.)
    FOR i IN 1 .. array_length(v_legs, 1) LOOP
        v_leg := v_legs[i];
        IF v_leg.amount < 0 AND v_leg.no_negative THEN
            v_available := v_available_of[array_position(v_locked, v_leg.account_id)];
            IF v_available + v_leg.amount < 0 THEN
                IF v_leg.shortfall_account_id IS NULL THEN
                    v_result := 'insufficient_funds';
                ELSE
                    v_cover := greatest(v_available, 0);
                    v_shortfall := v_shortfall + (-v_leg.amount - v_cover);
                    v_final := v_final || ROW(v_leg.shortfall_account_id, 0, 1, false,
                                              v_leg.amount + v_cover, v_leg.currency, NULL)::ledger_leg;
                    v_leg.amount := -v_cover;
                END IF;
            END IF;
        END IF;
        v_final := v_final || v_leg;
    END LOOP;
    IF v_result <> 'ok' THEN
        v_shortfall := 0;
    END IF;

    IF p_corrects IS NOT NULL THEN
        SELECT t.id INTO v_corrects FROM ledger_transactions t WHERE t.idempotency_key = p_corrects;
    END IF;
    INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, reference,
                                     corrects_id, shortfall, metadata)
    VALUES (p_key, p_hash, p_kind, v_result, p_reference, v_corrects, v_shortfall,
            coalesce(p_metadata, '{}'))
    ON CONFLICT ON CONSTRAINT ledger_transactions_key DO NOTHING
    RETURNING id INTO v_tx;
    IF v_tx IS NULL THEN
        -- A concurrent request with this key committed while we waited for the locks.
        SELECT * INTO v_prior FROM ledger_transactions t WHERE t.idempotency_key = p_key;
        RETURN QUERY SELECT * FROM ledger_replay(v_prior, p_hash);
        RETURN;
    END IF;
    IF v_result <> 'ok' THEN
        RETURN QUERY SELECT v_result, v_tx, false, 0::bigint;
        RETURN;
    END IF;

    WITH agg AS (
        SELECT u.account_id, u.shard, u.currency, sum(u.amount)::bigint AS amount
          FROM unnest(v_final) u GROUP BY 1, 2, 3 HAVING sum(u.amount) <> 0
    ), moved AS (
        UPDATE ledger_balances b SET posted = b.posted + agg.amount
          FROM agg WHERE b.account_id = agg.account_id AND b.shard = agg.shard
        RETURNING b.account_id, b.shard, agg.currency, agg.amount, b.posted
    )
    INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
    SELECT v_tx, m.account_id, m.shard, m.currency, m.amount, m.posted
      FROM moved m ORDER BY m.account_id, m.shard;

    RETURN QUERY SELECT 'ok'::text, v_tx, false, v_shortfall;
END $$;

-- Many transactions in one call (settlement batches, group commit), decided set-based: no
-- per-item statements. p_items: [{key, hash (hex), kind, reference, corrects, metadata}], item
-- numbers are positions from 1; p_legs: [{idx, leg_no, owner, type, currency, amount,
-- no_negative, shards, sf_owner, sf_type}]. Falls back to posting one by one, in item order,
-- when the batch needs per-item decisions: a key twice in the batch, or a no-negative account
-- that would dip below zero somewhere in the batch (a rejection or a shortfall to decide).
--
-- Planning note: a batch's rows come from JSON, whose size the planner cannot know, and its
-- row estimates would lead to nested loops over thousands of rows. The function turns nested
-- loops off (hash joins throughout; the JSON is flat so no lateral joins are needed) and reaches
-- tables only through `= ANY(array)` conditions, with sequential scans off so that they stay
-- index scans whatever the table statistics say (a young table's stats invite a seq scan that
-- compares every row with every key of the batch).
CREATE FUNCTION ledger_post_many(p_items jsonb, p_legs jsonb)
RETURNS TABLE (idx int, result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_item        record;
    v_keys        text[];
    v_corrects    text[];
    v_owners      text[];
    v_plain_ids   bigint[];
    v_nn_ids      bigint[];
    v_all_ids     bigint[];
    v_hot         record;
    v_hot_ids     bigint[] := '{}';
    v_hot_shards  smallint[] := '{}';
    v_unresolved  bigint;
    v_bad_items   bigint;
    v_dup_keys    bigint;
    v_slow        boolean := false;
BEGIN
    SELECT count(*) - count(DISTINCT x.key), array_agg(x.key),
           array_agg(x.corrects) FILTER (WHERE x.corrects IS NOT NULL)
      INTO v_dup_keys, v_keys, v_corrects
      FROM jsonb_to_recordset(p_items) AS x(key text, corrects text);
    -- Shape: every transfer has >= 2 legs in one currency summing to zero.
    WITH l AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(p_legs) AS l(idx int, owner text, amount bigint, currency text)
    ), s AS (
        SELECT l.idx, count(*) >= 2 AND sum(l.amount) = 0 AND count(DISTINCT l.currency) = 1 AS ok
          FROM l GROUP BY l.idx
    )
    SELECT (SELECT count(*) FILTER (WHERE NOT s.ok OR s.idx NOT BETWEEN 1 AND jsonb_array_length(p_items))
                   + abs(jsonb_array_length(p_items) - count(*)) FROM s),
           (SELECT array_agg(DISTINCT l.owner) FROM l)
      INTO v_bad_items, v_owners;
    IF v_bad_items > 0 THEN
        RAISE EXCEPTION 'ledger_post_many: every transfer needs >= 2 legs in one currency summing to zero'
            USING ERRCODE = 'check_violation';
    END IF;

    -- Accounts: create the missing ones (first use of an account) before anything is locked.
    FOR attempt IN 1 .. 2 LOOP
        SELECT count(*) FILTER (WHERE a.id IS NULL),
               array_agg(DISTINCT a.id) FILTER (WHERE a.shards = 1),
               array_agg(DISTINCT a.id) FILTER (WHERE a.no_negative AND l.amount < 0),
               array_agg(DISTINCT a.id)
          INTO v_unresolved, v_plain_ids, v_nn_ids, v_all_ids
          FROM jsonb_to_recordset(p_legs) AS l(owner text, type text, currency text, amount bigint)
          LEFT JOIN (SELECT * FROM ledger_accounts WHERE owner = ANY(v_owners)) a
                 ON a.owner = l.owner AND a.type = l.type AND a.currency = l.currency;
        EXIT WHEN v_unresolved = 0 OR attempt = 2;
        PERFORM ledger_ensure_accounts(p_legs);
    END LOOP;

    -- A shortfall leg only needs per-item treatment when its account cannot cover it; the
    -- funds check below finds that case (shortfall legs are debits of no-negative accounts).
    v_slow := v_dup_keys > 0;
    IF NOT v_slow THEN
        -- Lock: single-row accounts in account id order, then one free row of each hot account.
        PERFORM 1 FROM ledger_balances b
         WHERE b.shard = 0 AND b.account_id = ANY(v_plain_ids)
         ORDER BY b.account_id FOR UPDATE;
        FOR v_hot IN SELECT a.id, a.shards FROM ledger_accounts a
                      WHERE a.id = ANY(v_all_ids) AND a.shards > 1 ORDER BY a.id LOOP
            v_hot_ids := v_hot_ids || v_hot.id;
            v_hot_shards := v_hot_shards || ledger_lock_hot_shard(v_hot.id, v_hot.shards);
        END LOOP;

        -- Funds: the running available balance of every no-negative account that the batch
        -- debits, in item order (items already posted under their key do not count again).
        -- A batch that only credits such accounts (payouts) has nothing to check.
        v_slow := v_nn_ids IS NOT NULL AND EXISTS (
            SELECT 1 FROM (
                SELECT b.posted - b.pending_debits
                       + sum(l.amount) OVER (PARTITION BY a.id ORDER BY l.idx, l.leg_no) AS running
                  FROM jsonb_to_recordset(p_legs)
                       AS l(idx int, leg_no int, owner text, type text, currency text, amount bigint)
                  JOIN (SELECT * FROM ledger_accounts WHERE id = ANY(v_nn_ids)) a
                    ON a.owner = l.owner AND a.type = l.type AND a.currency = l.currency
                  JOIN (SELECT * FROM ledger_balances WHERE account_id = ANY(v_nn_ids) AND shard = 0) b
                    ON b.account_id = a.id
                  JOIN (SELECT x.o::int AS idx, x.key
                          FROM ROWS FROM (jsonb_to_recordset(p_items) AS (key text)) WITH ORDINALITY AS x(key, o)) i
                    ON i.idx = l.idx
                  LEFT JOIN (SELECT t.idempotency_key FROM ledger_transactions t
                              WHERE t.idempotency_key = ANY(v_keys)) seen ON seen.idempotency_key = i.key
                 WHERE seen.idempotency_key IS NULL) r
             WHERE r.running < 0);
    END IF;

    IF v_slow THEN
        FOR v_item IN
            SELECT i.idx, i.key, i.hash, i.kind, i.reference, i.corrects, i.metadata, g.legs
              FROM (SELECT x.o::int AS idx, x.key, x.hash, x.kind, x.reference, x.corrects, x.metadata
                      FROM ROWS FROM (jsonb_to_recordset(p_items) AS (key text, hash text, kind text,
                           reference text, corrects text, metadata jsonb)) WITH ORDINALITY
                           AS x(key, hash, kind, reference, corrects, metadata, o)) i
              JOIN (SELECT (l->>'idx')::int AS idx, jsonb_agg(l ORDER BY (l->>'leg_no')::int) AS legs
                      FROM jsonb_array_elements(p_legs) AS l GROUP BY 1) g ON g.idx = i.idx
             ORDER BY i.idx
        LOOP
            RETURN QUERY SELECT v_item.idx, p.* FROM ledger_post(v_item.key, decode(v_item.hash, 'hex'),
                v_item.kind, v_item.reference, v_item.corrects, coalesce(v_item.metadata, '{}'), v_item.legs) p;
        END LOOP;
        RETURN;
    END IF;

    -- Post: transactions, entries with each balance row's running balance, balance rows; one
    -- statement. Keys seen before get their stored outcome (or a conflict).
    RETURN QUERY
    WITH items AS MATERIALIZED (
        SELECT x.o::int AS idx, x.key, decode(x.hash, 'hex') AS hash, x.kind, x.reference, x.corrects,
               coalesce(x.metadata, '{}') AS metadata
          FROM ROWS FROM (jsonb_to_recordset(p_items) AS (key text, hash text, kind text,
               reference text, corrects text, metadata jsonb)) WITH ORDINALITY
               AS x(key, hash, kind, reference, corrects, metadata, o)
    ), prior AS MATERIALIZED (
        SELECT i.idx, t.id, t.shortfall,
               CASE WHEN t.request_hash = i.hash THEN t.result ELSE 'conflict' END AS result
          FROM items i
          JOIN (SELECT * FROM ledger_transactions WHERE idempotency_key = ANY(v_keys)) t
            ON t.idempotency_key = i.key
    ), fresh AS MATERIALIZED (
        SELECT i.* FROM items i LEFT JOIN prior p ON p.idx = i.idx WHERE p.idx IS NULL
    ), inserted AS (
        INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, reference,
                                         corrects_id, metadata)
        SELECT f.key, f.hash, f.kind, 'ok', f.reference, c.id, f.metadata
          FROM fresh f
          LEFT JOIN (SELECT id, idempotency_key FROM ledger_transactions
                      WHERE idempotency_key = ANY(v_corrects)) c ON c.idempotency_key = f.corrects
         ORDER BY f.idx
        ON CONFLICT ON CONSTRAINT ledger_transactions_key DO NOTHING
        RETURNING id, idempotency_key
    ), legs AS MATERIALIZED (
        SELECT l.idx, l.leg_no, ins.id AS tx_id, a.id AS account_id, a.currency,
               (CASE WHEN a.shards > 1 THEN v_hot_shards[array_position(v_hot_ids, a.id)] ELSE 0 END)::smallint AS shard,
               l.amount
          FROM jsonb_to_recordset(p_legs)
               AS l(idx int, leg_no int, owner text, type text, currency text, amount bigint)
          JOIN fresh f ON f.idx = l.idx
          JOIN inserted ins ON ins.idempotency_key = f.key
          JOIN (SELECT * FROM ledger_accounts WHERE id = ANY(v_all_ids)) a
            ON a.owner = l.owner AND a.type = l.type AND a.currency = l.currency
    ), moved AS (
        UPDATE ledger_balances b SET posted = b.posted + s.total
          FROM (SELECT g.account_id, g.shard, sum(g.amount) AS total FROM legs g GROUP BY 1, 2) s
         WHERE b.account_id = ANY(v_all_ids) AND b.account_id = s.account_id AND b.shard = s.shard
        RETURNING b.account_id, b.shard, b.posted - s.total AS before
    ), written AS (
        INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
        SELECT g.tx_id, g.account_id, g.shard, g.currency, g.amount,
               m.before + sum(g.amount) OVER (PARTITION BY g.account_id, g.shard ORDER BY g.idx, g.leg_no)
          FROM legs g JOIN moved m ON m.account_id = g.account_id AND m.shard = g.shard
         ORDER BY g.account_id, g.shard, g.idx, g.leg_no
        RETURNING 1
    )
    SELECT i.idx,
           coalesce(p.result, CASE WHEN ins.id IS NULL THEN ledger_raced(i.key) ELSE 'ok' END),
           coalesce(p.id, ins.id), p.id IS NOT NULL, coalesce(p.shortfall, 0::bigint)
      FROM items i
      LEFT JOIN prior p ON p.idx = i.idx
      LEFT JOIN inserted ins ON ins.idempotency_key = i.key
     ORDER BY i.idx;
END $$;

-- Phase one of a two-phase transfer: reserve p_amount from the debit leg's account for the
-- credit leg's account. p_legs as for ledger_post: [debit (amount < 0), credit (amount > 0)].
CREATE FUNCTION ledger_hold(p_key text, p_hash bytea, p_reference text, p_metadata jsonb, p_legs jsonb)
RETURNS TABLE (result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_prior   ledger_transactions;
    v_debit   ledger_accounts;
    v_credit  ledger_accounts;
    v_amount  bigint;
    v_result  text := 'ok';
    v_tx      bigint;
BEGIN
    SELECT * INTO v_prior FROM ledger_transactions t WHERE t.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT * FROM ledger_replay(v_prior, p_hash);
        RETURN;
    END IF;
    PERFORM ledger_ensure_accounts(p_legs);
    SELECT a.* INTO v_debit FROM jsonb_to_recordset(p_legs) AS x(owner text, type text, currency text, amount bigint)
      JOIN ledger_accounts a ON (a.owner, a.type, a.currency) = (x.owner, x.type, x.currency) WHERE x.amount < 0;
    SELECT a.* INTO v_credit FROM jsonb_to_recordset(p_legs) AS x(owner text, type text, currency text, amount bigint)
      JOIN ledger_accounts a ON (a.owner, a.type, a.currency) = (x.owner, x.type, x.currency) WHERE x.amount > 0;
    SELECT x.amount INTO v_amount FROM jsonb_to_recordset(p_legs) AS x(amount bigint) WHERE x.amount > 0;

    PERFORM 1 FROM ledger_balances b WHERE b.shard = 0 AND b.account_id IN (v_debit.id, v_credit.id)
     ORDER BY b.account_id FOR UPDATE;
    IF v_debit.no_negative AND (SELECT b.posted - b.pending_debits FROM ledger_balances b
                                 WHERE b.account_id = v_debit.id AND b.shard = 0) < v_amount THEN
        v_result := 'insufficient_funds';
    END IF;

    INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, reference, metadata)
    VALUES (p_key, p_hash, 'hold', v_result, p_reference, coalesce(p_metadata, '{}'))
    ON CONFLICT ON CONSTRAINT ledger_transactions_key DO NOTHING
    RETURNING id INTO v_tx;
    IF v_tx IS NULL THEN
        SELECT * INTO v_prior FROM ledger_transactions t WHERE t.idempotency_key = p_key;
        RETURN QUERY SELECT * FROM ledger_replay(v_prior, p_hash);
        RETURN;
    END IF;
    IF v_result = 'ok' THEN
        INSERT INTO ledger_holds (transaction_id, debit_account_id, credit_account_id, currency, amount)
        VALUES (v_tx, v_debit.id, v_credit.id, v_debit.currency, v_amount);
        UPDATE ledger_balances b SET pending_debits = b.pending_debits + v_amount
         WHERE b.account_id = v_debit.id AND b.shard = 0;
        UPDATE ledger_balances b SET pending_credits = b.pending_credits + v_amount
         WHERE b.account_id = v_credit.id AND b.shard = 0;
    END IF;
    RETURN QUERY SELECT v_result, v_tx, false, 0::bigint;
END $$;

-- Phase two: post the hold (all of it, or p_amount of it; the rest returns) or void it.
-- A hold is resolved exactly once; later attempts are rejected with a named result.
CREATE FUNCTION ledger_resolve_hold(p_key text, p_hash bytea, p_hold_key text, p_action text,
                                    p_amount bigint, p_metadata jsonb)
RETURNS TABLE (result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_prior   ledger_transactions;
    v_hold    ledger_holds;
    v_result  text := 'ok';
    v_posted  bigint;
    v_tx      bigint;
    v_after   bigint;
BEGIN
    SELECT * INTO v_prior FROM ledger_transactions t WHERE t.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT * FROM ledger_replay(v_prior, p_hash);
        RETURN;
    END IF;
    SELECT h.* INTO v_hold FROM ledger_holds h
      JOIN ledger_transactions t ON t.id = h.transaction_id
     WHERE t.idempotency_key = p_hold_key
       FOR UPDATE OF h;
    IF NOT FOUND THEN
        v_result := 'hold_not_found';
    ELSIF v_hold.state = 'posted' THEN
        v_result := 'hold_already_posted';
    ELSIF v_hold.state = 'voided' THEN
        v_result := 'hold_already_voided';
    ELSIF p_action = 'post' AND coalesce(p_amount, v_hold.amount) > v_hold.amount THEN
        v_result := 'hold_amount_exceeded';
    END IF;
    v_posted := CASE WHEN p_action = 'post' THEN coalesce(p_amount, v_hold.amount) ELSE 0 END;
    IF v_result = 'ok' THEN
        PERFORM 1 FROM ledger_balances b
         WHERE b.shard = 0 AND b.account_id IN (v_hold.debit_account_id, v_hold.credit_account_id)
         ORDER BY b.account_id FOR UPDATE;
    END IF;

    INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, hold_id, metadata)
    VALUES (p_key, p_hash, 'hold_' || p_action, v_result, v_hold.transaction_id, coalesce(p_metadata, '{}'))
    ON CONFLICT ON CONSTRAINT ledger_transactions_key DO NOTHING
    RETURNING id INTO v_tx;
    IF v_tx IS NULL THEN
        SELECT * INTO v_prior FROM ledger_transactions t WHERE t.idempotency_key = p_key;
        RETURN QUERY SELECT * FROM ledger_replay(v_prior, p_hash);
        RETURN;
    END IF;
    IF v_result <> 'ok' THEN
        RETURN QUERY SELECT v_result, v_tx, false, 0::bigint;
        RETURN;
    END IF;

    UPDATE ledger_holds h SET state = CASE WHEN p_action = 'post' THEN 'posted' ELSE 'voided' END,
                              posted_amount = v_posted, resolved_by = v_tx
     WHERE h.transaction_id = v_hold.transaction_id;
    UPDATE ledger_balances b SET pending_debits = b.pending_debits - v_hold.amount,
                                 posted = b.posted - v_posted
     WHERE b.account_id = v_hold.debit_account_id AND b.shard = 0
    RETURNING b.posted INTO v_after;
    IF v_posted > 0 THEN
        INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
        VALUES (v_tx, v_hold.debit_account_id, 0, v_hold.currency, -v_posted, v_after);
    END IF;
    UPDATE ledger_balances b SET pending_credits = b.pending_credits - v_hold.amount,
                                 posted = b.posted + v_posted
     WHERE b.account_id = v_hold.credit_account_id AND b.shard = 0
    RETURNING b.posted INTO v_after;
    IF v_posted > 0 THEN
        INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
        VALUES (v_tx, v_hold.credit_account_id, 0, v_hold.currency, v_posted, v_after);
    END IF;
    RETURN QUERY SELECT 'ok'::text, v_tx, false, 0::bigint;
END $$;

-- The posting functions run the same statements with different values millions of times:
-- plan them once (generic plans) instead of re-planning on every call. Every table access in
-- them is by key, so sequential scans are off: a plan made while a table is young (or its
-- statistics stale) must not scan every account or balance row on every posting.
ALTER FUNCTION ledger_post(text, bytea, text, text, text, jsonb, jsonb)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ledger_hold(text, bytea, text, jsonb, jsonb)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ledger_resolve_hold(text, bytea, text, text, bigint, jsonb)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ledger_lock_hot_shard(bigint, smallint)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
