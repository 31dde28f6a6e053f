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

    -- Lock: single-row accounts (legs and shortfall accounts) in account id order...
    PERFORM 1 FROM ledger_balances b
     WHERE b.shard = 0 AND b.account_id IN (
               SELECT u.account_id FROM unnest(v_legs) u WHERE u.shards = 1
               UNION SELECT u.shortfall_account_id FROM unnest(v_legs) u
                      WHERE u.shortfall_account_id IS NOT NULL)
     ORDER BY b.account_id FOR UPDATE;
    -- ...then any free row of each hot account.
    FOR i IN 1 .. array_length(v_legs, 1) LOOP
        v_leg := v_legs[i];
        IF v_leg.shards > 1 THEN
            v_leg.shard := ledger_lock_hot_shard(v_leg.account_id, v_leg.shards);
            v_legs[i] := v_leg;
        END IF;
    END LOOP;

    -- Funds: a debit may not take a no-negative account's available balance below zero; the
    -- part it cannot cover goes to the leg's shortfall account when it names one.
    FOR i IN 1 .. array_length(v_legs, 1) LOOP
        v_leg := v_legs[i];
        IF v_leg.amount < 0 AND v_leg.no_negative THEN
            SELECT b.posted - b.pending_debits INTO v_available
              FROM ledger_balances b WHERE b.account_id = v_leg.account_id AND b.shard = v_leg.shard;
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

-- Many transactions in one call and one set of statements (settlement batches). Falls back to
-- posting one by one, in order, when the batch needs per-item decisions (a key twice in the
-- batch, a shortfall leg, or a no-negative account that would dip below zero somewhere).
CREATE FUNCTION ledger_post_many(p_items jsonb)
RETURNS TABLE (idx int, result text, transaction_id bigint, replayed boolean, shortfall bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_item      record;
    v_hot       record;
    v_shard     smallint;
    v_resolved  bigint;
    v_wanted    bigint;
BEGIN
    -- Session-local scratch tables, created once per connection and emptied per call.
    IF to_regclass('pg_temp._lp_items') IS NULL THEN
        CREATE TEMP TABLE _lp_items (
            idx int, key text, hash bytea, kind text, reference text, corrects text, metadata jsonb,
            legs jsonb, tx_id bigint, result text, replayed boolean, shortfall bigint);
        CREATE TEMP TABLE _lp_legs (
            idx int, leg_no int, account_id bigint, shard smallint, shards smallint,
            no_negative boolean, currency char(3), amount bigint);
    END IF;
    DELETE FROM _lp_items;
    DELETE FROM _lp_legs;

    INSERT INTO _lp_items (idx, key, hash, kind, reference, corrects, metadata, legs)
    SELECT x.o::int, x.e->>'key', decode(x.e->>'hash', 'hex'), x.e->>'kind', x.e->>'reference',
           x.e->>'corrects', coalesce(x.e->'metadata', '{}'), x.e->'legs'
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(e, o);

    IF EXISTS (SELECT 1 FROM _lp_items i GROUP BY i.key HAVING count(*) > 1)
       OR EXISTS (SELECT 1 FROM _lp_items i, jsonb_to_recordset(i.legs) AS x(sf_owner text)
                   WHERE x.sf_owner IS NOT NULL) THEN
        FOR v_item IN SELECT * FROM _lp_items i ORDER BY i.idx LOOP
            RETURN QUERY SELECT v_item.idx, p.* FROM ledger_post(v_item.key, v_item.hash, v_item.kind,
                v_item.reference, v_item.corrects, v_item.metadata, v_item.legs) p;
        END LOOP;
        RETURN;
    END IF;

    -- Keys seen before: their stored outcome (or a conflict).
    UPDATE _lp_items i
       SET tx_id = t.id, replayed = true, shortfall = t.shortfall,
           result = CASE WHEN t.request_hash = i.hash THEN t.result ELSE 'conflict' END
      FROM ledger_transactions t WHERE t.idempotency_key = i.key;

    -- Resolve the legs' accounts; create the missing ones first time round only.
    FOR attempt IN 1 .. 2 LOOP
        INSERT INTO _lp_legs (idx, leg_no, account_id, shard, shards, no_negative, currency, amount)
        SELECT i.idx, x.o::int, a.id, 0, a.shards, a.no_negative, a.currency, (x.l->>'amount')::bigint
          FROM _lp_items i
         CROSS JOIN LATERAL jsonb_array_elements(i.legs) WITH ORDINALITY AS x(l, o)
          JOIN ledger_accounts a
            ON a.owner = x.l->>'owner' AND a.type = x.l->>'type' AND a.currency = x.l->>'currency'
         WHERE i.tx_id IS NULL;
        GET DIAGNOSTICS v_resolved = ROW_COUNT;
        SELECT coalesce(sum(jsonb_array_length(i.legs)), 0) INTO v_wanted FROM _lp_items i WHERE i.tx_id IS NULL;
        EXIT WHEN v_resolved = v_wanted OR attempt = 2;
        DELETE FROM _lp_legs;
        PERFORM ledger_ensure_accounts(
            (SELECT jsonb_agg(l) FROM _lp_items i, jsonb_array_elements(i.legs) l WHERE i.tx_id IS NULL));
    END LOOP;
    IF v_resolved <> v_wanted
       OR EXISTS (SELECT 1 FROM _lp_legs l GROUP BY l.idx HAVING sum(l.amount) <> 0 OR count(DISTINCT l.currency) > 1)
       OR EXISTS (SELECT 1 FROM _lp_items i WHERE i.tx_id IS NULL
                     AND jsonb_array_length(i.legs) < 2) THEN
        RAISE EXCEPTION 'ledger_post_many: every transfer needs >= 2 legs summing to zero per currency'
            USING ERRCODE = 'check_violation';
    END IF;

    PERFORM 1 FROM ledger_balances b
     WHERE b.shard = 0 AND b.account_id IN (SELECT l.account_id FROM _lp_legs l WHERE l.shards = 1)
     ORDER BY b.account_id FOR UPDATE;
    FOR v_hot IN SELECT DISTINCT l.account_id, l.shards FROM _lp_legs l WHERE l.shards > 1
                  ORDER BY l.account_id LOOP
        v_shard := ledger_lock_hot_shard(v_hot.account_id, v_hot.shards);
        UPDATE _lp_legs l SET shard = v_shard WHERE l.account_id = v_hot.account_id;
    END LOOP;

    IF EXISTS (
        SELECT 1 FROM (
            SELECT b.posted - b.pending_debits
                   + sum(l.amount) OVER (PARTITION BY l.account_id ORDER BY l.idx, l.leg_no) AS running
              FROM _lp_legs l JOIN ledger_balances b ON b.account_id = l.account_id AND b.shard = l.shard
             WHERE l.no_negative) r
         WHERE r.running < 0) THEN
        FOR v_item IN SELECT * FROM _lp_items i ORDER BY i.idx LOOP
            RETURN QUERY SELECT v_item.idx, p.* FROM ledger_post(v_item.key, v_item.hash, v_item.kind,
                v_item.reference, v_item.corrects, v_item.metadata, v_item.legs) p;
        END LOOP;
        RETURN;
    END IF;

    WITH inserted AS (
        INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result, reference,
                                         corrects_id, metadata)
        SELECT i.key, i.hash, i.kind, 'ok', i.reference, c.id, i.metadata
          FROM _lp_items i LEFT JOIN ledger_transactions c ON c.idempotency_key = i.corrects
         WHERE i.tx_id IS NULL
         ORDER BY i.idx
        ON CONFLICT ON CONSTRAINT ledger_transactions_key DO NOTHING
        RETURNING id, idempotency_key
    )
    UPDATE _lp_items i SET tx_id = ins.id, result = 'ok', replayed = false, shortfall = 0
      FROM inserted ins WHERE ins.idempotency_key = i.key;
    IF EXISTS (SELECT 1 FROM _lp_items i WHERE i.tx_id IS NULL) THEN
        -- A concurrent request committed one of these keys after we looked: start over.
        RAISE EXCEPTION 'ledger_post_many: concurrent duplicate idempotency key'
            USING ERRCODE = 'serialization_failure';
    END IF;

    INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount, balance_after)
    SELECT i.tx_id, l.account_id, l.shard, l.currency, l.amount,
           b.posted + sum(l.amount) OVER (PARTITION BY l.account_id, l.shard ORDER BY l.idx, l.leg_no)
      FROM _lp_legs l
      JOIN _lp_items i ON i.idx = l.idx
      JOIN ledger_balances b ON b.account_id = l.account_id AND b.shard = l.shard
     ORDER BY l.account_id, l.shard, l.idx, l.leg_no;
    UPDATE ledger_balances b SET posted = b.posted + s.total
      FROM (SELECT l.account_id, l.shard, sum(l.amount) AS total FROM _lp_legs l GROUP BY 1, 2) s
     WHERE b.account_id = s.account_id AND b.shard = s.shard;

    RETURN QUERY SELECT i.idx, i.result, i.tx_id, coalesce(i.replayed, false), coalesce(i.shortfall, 0::bigint)
                   FROM _lp_items i ORDER BY i.idx;
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
