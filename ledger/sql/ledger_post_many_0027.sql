-- ledger_post_many, migration 0027_ledger_post_many_funds (replaces 0001's, ledger/sql/functions.sql).
-- Same arguments, result rows, locks and decisions; what changed:
-- * The accounts statement reads the legs grouped by account (one row per account, not per leg)
--   and also returns, per no-negative account the batch debits, the sum of those debits.
-- * Funds: a batch needs the per-item walk (the running balance of each debited no-negative
--   account in item order, items already posted left out) only when some such account could
--   go below zero at all: its available balance plus every debit of the batch (credits and
--   replays left out, so never less than any running balance) is below zero. Otherwise no
--   running balance can be, and the walk, which parses the batch's JSON twice more and looks up
--   every key again, is skipped. A settlement page debits each player's in-play account by
--   stakes that are in it: the walk never ran for one that passes this check.
--
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
CREATE OR REPLACE FUNCTION ledger_post_many(p_items jsonb, p_legs jsonb)
RETURNS TABLE (idx int, result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql SET enable_nestloop = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan
    SET jit = off AS $$
DECLARE
    v_item        record;
    v_keys        text[];
    v_corrects    text[];
    v_owners      text[];
    v_plain_ids   bigint[];
    v_nn_ids      bigint[];
    v_all_ids     bigint[];
    v_nn_debits   numeric[];
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
               array_agg(a.id ORDER BY a.id) FILTER (WHERE a.shards = 1),
               array_agg(a.id ORDER BY a.id) FILTER (WHERE a.no_negative AND l.debits < 0),
               array_agg(a.id ORDER BY a.id),
               array_agg(l.debits ORDER BY a.id) FILTER (WHERE a.no_negative AND l.debits < 0)
          INTO v_unresolved, v_plain_ids, v_nn_ids, v_all_ids, v_nn_debits
          FROM (SELECT x.owner, x.type, x.currency,
                       coalesce(sum(x.amount) FILTER (WHERE x.amount < 0), 0) AS debits
                  FROM jsonb_to_recordset(p_legs) AS x(owner text, type text, currency text, amount bigint)
                 GROUP BY x.owner, x.type, x.currency) l
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
        -- First whether any such account could go below zero at all (see the top).
        v_slow := v_nn_ids IS NOT NULL AND EXISTS (
            SELECT 1 FROM unnest(v_nn_ids, v_nn_debits) AS d(account_id, debits)
              JOIN (SELECT * FROM ledger_balances WHERE account_id = ANY(v_nn_ids) AND shard = 0) b
                ON b.account_id = d.account_id
             WHERE b.posted - b.pending_debits + d.debits < 0);
    END IF;
    IF v_slow AND v_dup_keys = 0 THEN
        -- It could: walk the running balances.
        v_slow := EXISTS (
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
