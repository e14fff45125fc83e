"""The run store's PL/pgSQL functions, by the schema version that creates them: admission and
finalization (version 1, ``FUNCTIONS_V1``), claims, leases, fenced finalization and the sweep
(version 2, ``MIGRATION_V2``; postgres_claims.py documents the design) and admission with a lease
(version 3, ``MIGRATION_V3``). runtime/store/postgres_migrations.py applies them in its
``MIGRATIONS`` steps, with the tables.

Invariant: the text of a released version never changes in meaning. A database is migrated in
place and processes of two versions may share it during a deploy, so a change to a function is
a new migration step with a new function name, never an edit here. That is why
``gw_finish_run_fenced_v1`` and ``gw_delete_run_fenced_v1`` keep their common ending (leave the
thread, wake the claimers) written twice: a helper both call would mean a new function and new
versions of both, i.e. a new schema version, which an older gateway refuses to start on.
"""

from __future__ import annotations

# Admission and finalization as functions: one round trip each instead of five or six (client
# CPU per admit + start + finish: 1.30 -> ~0.5 ms). In READ COMMITTED every statement of a
# (volatile) function takes a new snapshot, so what follows the thread lock sees everything
# committed before it was granted (postgres.py invariant 4). ``gw_admit_run_v1`` raises
# SQLSTATE GW404 (no thread), GW409 (reject on a busy thread) or GW400 (nothing to resume; the
# message is the thread's rest status): postgres.py maps them to runtime errors.
FUNCTIONS_V1 = """
CREATE OR REPLACE FUNCTION gw_thread_after_run_v1(
    p_thread text, p_now text, p_set boolean, p_values jsonb, p_interrupts jsonb,
    p_error jsonb, p_rest text, p_meta jsonb
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    busy boolean := EXISTS (SELECT 1 FROM runs WHERE thread_id = p_thread
                            AND status IN ('pending', 'running'));
BEGIN
    IF p_set THEN
        UPDATE threads SET "values" = p_values, interrupts = p_interrupts, error = p_error,
            rest_status = p_rest, status = CASE WHEN busy THEN 'busy' ELSE p_rest END,
            metadata = metadata || p_meta, updated_at = p_now, state_updated_at = p_now
        WHERE thread_id = p_thread;
    ELSE
        UPDATE threads SET status = CASE WHEN busy THEN 'busy' ELSE rest_status END,
            updated_at = p_now
        WHERE thread_id = p_thread;
    END IF;
END $fn$;

-- finish_run: lock the thread, CAS the run from pending/running, leave the thread
CREATE OR REPLACE FUNCTION gw_finish_run_v1(
    p_run text, p_thread text, p_status text, p_now text, p_set boolean, p_values jsonb,
    p_interrupts jsonb, p_error jsonb, p_rest text, p_meta jsonb
) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM threads WHERE thread_id = p_thread FOR UPDATE;
    UPDATE runs SET status = p_status, updated_at = p_now
    WHERE run_id = p_run AND status IN ('pending', 'running');
    IF NOT FOUND THEN
        RETURN false;  -- a late finisher never touches the thread either
    END IF;
    PERFORM gw_thread_after_run_v1(p_thread, p_now, p_set, p_values, p_interrupts, p_error,
                                   p_rest, p_meta);
    RETURN true;
END $fn$;

-- delete_run: lock the thread, delete the run, leave the thread
CREATE OR REPLACE FUNCTION gw_delete_run_v1(
    p_run text, p_thread text, p_now text, p_set boolean, p_values jsonb,
    p_interrupts jsonb, p_error jsonb, p_rest text, p_meta jsonb
) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM threads WHERE thread_id = p_thread FOR UPDATE;
    DELETE FROM runs WHERE run_id = p_run AND thread_id = p_thread;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM gw_thread_after_run_v1(p_thread, p_now, p_set, p_values, p_interrupts, p_error,
                                   p_rest, p_meta);
    RETURN true;
END $fn$;

-- admit_run: (create the thread), lock it, check the strategy, insert the run, mark the thread
-- busy; returns the runs that were already active, oldest first
CREATE OR REPLACE FUNCTION gw_admit_run_v1(
    p_run text, p_thread text, p_assistant text, p_graph text, p_status text,
    p_metadata jsonb, p_kwargs jsonb, p_strategy text, p_created_at text, p_updated_at text,
    p_attempt integer, p_cancel_action text, p_on_completion text, p_not_before text,
    p_create_thread boolean, p_thread_meta jsonb, p_require_interrupted boolean,
    p_start_if_idle boolean
) RETURNS SETOF runs LANGUAGE plpgsql AS $fn$
DECLARE
    rest text;
    active runs[];
BEGIN
    IF p_create_thread THEN  -- a no-op on an existing thread (or one created concurrently)
        INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, metadata)
        VALUES (p_thread, p_created_at, p_created_at, p_created_at, p_thread_meta)
        ON CONFLICT (thread_id) DO NOTHING;
    END IF;
    SELECT rest_status INTO rest FROM threads WHERE thread_id = p_thread FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no thread %', p_thread USING ERRCODE = 'GW404';
    END IF;
    active := ARRAY(SELECT r FROM runs AS r WHERE r.thread_id = p_thread
                    AND r.status IN ('pending', 'running') ORDER BY r.seq);
    IF cardinality(active) > 0 AND p_strategy = 'reject' THEN
        RAISE EXCEPTION 'thread % is busy', p_thread USING ERRCODE = 'GW409';
    END IF;
    IF p_require_interrupted AND cardinality(active) = 0 AND rest <> 'interrupted' THEN
        RAISE EXCEPTION '%', rest USING ERRCODE = 'GW400';
    END IF;
    INSERT INTO runs (run_id, thread_id, assistant_id, graph_id, status, metadata, kwargs,
                      multitask_strategy, created_at, updated_at, attempt, cancel_action,
                      on_completion, not_before)
    VALUES (p_run, p_thread, p_assistant, p_graph,
            CASE WHEN p_start_if_idle AND cardinality(active) = 0 THEN 'running'
                 ELSE p_status END,
            p_metadata, p_kwargs, p_strategy, p_created_at, p_updated_at, p_attempt,
            p_cancel_action, p_on_completion, p_not_before);
    UPDATE threads SET status = 'busy', updated_at = p_created_at,  -- the run's graph's now
        metadata = metadata || jsonb_build_object('graph_id', p_graph,
                                                  'assistant_id', p_assistant)
    WHERE thread_id = p_thread;
    RETURN QUERY SELECT * FROM unnest(active);
END $fn$;
"""

# Claims and leases (schema version 2; postgres_claims.py documents the design). Every lease
# instant comes from the database clock (``now()``: the transaction's start); ``updated_at`` stays
# the runtime's ISO text as in version 1. Lock order everywhere is the thread row, then run rows
# (postgres.py invariant 4); the claim and the sweep take both with SKIP LOCKED, so they never
# wait on a row lock. Version 2 adds functions only, no column and no index:
# - a column added to ``runs`` breaks every version-1 session still connected (its cached
#   ``gw_admit_run_v1`` keeps the old row type of ``runs[]``: "structure of query does not match
#   function result type" on each admission until it reconnects), so a rolling deploy cannot add
#   one; the columns the claims need were created by version 1;
# - the sweep's scan of running runs uses ``runs_one_running`` (one entry per running run), the
#   claim's scan of pending heads ``runs_thread_active``/``runs_active``: a further index would
#   only slow every status change of the single-process gateway.
# Their NOTIFY goes to ``gw_runs`` (``postgres_schema.RUNS_CHANNEL``).
MIGRATION_V2 = """
-- admit_run, then wake the claimers if the new run is pending, due and first in line
CREATE OR REPLACE FUNCTION gw_admit_run_notify_v1(
    p_run text, p_thread text, p_assistant text, p_graph text, p_status text,
    p_metadata jsonb, p_kwargs jsonb, p_strategy text, p_created_at text, p_updated_at text,
    p_attempt integer, p_cancel_action text, p_on_completion text, p_not_before text,
    p_create_thread boolean, p_thread_meta jsonb, p_require_interrupted boolean,
    p_start_if_idle boolean
) RETURNS SETOF runs LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM gw_admit_run_v1(
        p_run, p_thread, p_assistant, p_graph, p_status, p_metadata, p_kwargs, p_strategy,
        p_created_at, p_updated_at, p_attempt, p_cancel_action, p_on_completion, p_not_before,
        p_create_thread, p_thread_meta, p_require_interrupted, p_start_if_idle);
    IF p_not_before IS NULL AND EXISTS (SELECT 1 FROM runs WHERE run_id = p_run
                                        AND status = 'pending') THEN
        PERFORM pg_notify('gw_runs', '');
    END IF;
END $fn$;

-- claim: each thread's oldest pending run with no cancel intent, if due and the thread runs
-- nothing; thread row then run row, both SKIP LOCKED; every condition re-checked on a fresh
-- snapshot once the locks are held; a unique violation (a start that bypassed the thread lock,
-- e.g. mark_running) skips the thread
CREATE OR REPLACE FUNCTION gw_claim_runs_v1(
    p_owner text, p_limit integer, p_lease_s double precision, p_now text
) RETURNS SETOF runs LANGUAGE plpgsql AS $fn$
DECLARE
    cand record;
    got runs;
    n integer := 0;
BEGIN
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    FOR cand IN  -- pending runs in admission order that are their thread's head (a cursor:
                 -- a fast-start plan walks runs_active by seq and probes per row, so a claim
                 -- reads about as many rows as it skips, not the whole backlog)
        SELECT p.seq, p.thread_id FROM runs AS p
        WHERE p.status = 'pending' AND p.cancel_action IS NULL
          AND (p.not_before IS NULL OR p.not_before::timestamptz <= now())
          AND NOT EXISTS (SELECT 1 FROM runs AS x WHERE x.thread_id = p.thread_id
                          AND x.status = 'running')
          AND NOT EXISTS (SELECT 1 FROM runs AS x WHERE x.thread_id = p.thread_id
                          AND x.status = 'pending' AND x.cancel_action IS NULL
                          AND x.seq < p.seq)
        ORDER BY p.seq
    LOOP
        PERFORM 1 FROM threads AS t WHERE t.thread_id = cand.thread_id FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        PERFORM 1 FROM runs AS p WHERE p.seq = cand.seq AND p.status = 'pending'
            AND p.cancel_action IS NULL FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM runs AS x WHERE x.thread_id = cand.thread_id
            AND (x.status = 'running' OR (x.status = 'pending' AND x.cancel_action IS NULL
                                          AND x.seq < cand.seq)));
        BEGIN
            UPDATE runs SET status = 'running', owner = p_owner,
                lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => p_lease_s), updated_at = p_now
            WHERE seq = cand.seq RETURNING * INTO got;
        EXCEPTION WHEN unique_violation THEN
            CONTINUE;
        END;
        RETURN NEXT got;
        n := n + 1;
        EXIT WHEN n >= p_limit;
    END LOOP;
END $fn$;

-- finish_run fenced by the lease token: only the attempt that holds the lease ends the run
CREATE OR REPLACE FUNCTION gw_finish_run_fenced_v1(
    p_run text, p_thread text, p_token uuid, p_status text, p_now text, p_set boolean,
    p_values jsonb, p_interrupts jsonb, p_error jsonb, p_rest text, p_meta jsonb
) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM threads WHERE thread_id = p_thread FOR UPDATE;
    UPDATE runs SET status = p_status, lease_expires_at = NULL, updated_at = p_now
    WHERE run_id = p_run AND thread_id = p_thread AND status = 'running'
      AND lease_token = p_token;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM gw_thread_after_run_v1(p_thread, p_now, p_set, p_values, p_interrupts, p_error,
                                   p_rest, p_meta);
    IF EXISTS (SELECT 1 FROM runs WHERE thread_id = p_thread AND status = 'pending') THEN
        PERFORM pg_notify('gw_runs', '');
    END IF;
    RETURN true;
END $fn$;

-- delete_run fenced by the lease token (the owner's rollback of its own run)
CREATE OR REPLACE FUNCTION gw_delete_run_fenced_v1(
    p_run text, p_thread text, p_token uuid, p_now text, p_set boolean, p_values jsonb,
    p_interrupts jsonb, p_error jsonb, p_rest text, p_meta jsonb
) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM threads WHERE thread_id = p_thread FOR UPDATE;
    DELETE FROM runs WHERE run_id = p_run AND thread_id = p_thread AND status = 'running'
      AND lease_token = p_token;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM gw_thread_after_run_v1(p_thread, p_now, p_set, p_values, p_interrupts, p_error,
                                   p_rest, p_meta);
    IF EXISTS (SELECT 1 FROM runs WHERE thread_id = p_thread AND status = 'pending') THEN
        PERFORM pg_notify('gw_runs', '');
    END IF;
    RETURN true;
END $fn$;

-- sweep: running runs whose lease expired more than p_grace_s ago, and pending runs whose
-- cancel intent is older than p_grace_s (their canceller died before finishing them)
CREATE OR REPLACE FUNCTION gw_sweep_runs_v1(
    p_max_attempts integer, p_grace_s double precision, p_now text
) RETURNS TABLE (o_outcome text, o_owner text, o_run runs) LANGUAGE plpgsql AS $fn$
DECLARE
    cand record;
    got runs;
    horizon timestamptz := now() - make_interval(secs => p_grace_s);
    swept boolean := false;
BEGIN
    FOR cand IN
        SELECT r.seq, r.thread_id FROM runs AS r
        WHERE r.status = 'running' AND r.lease_expires_at < horizon
        UNION
        SELECT r.seq, r.thread_id FROM runs AS r
        WHERE r.status = 'pending' AND r.cancel_action IS NOT NULL
          AND COALESCE(r.cancel_requested_at, '-infinity') < horizon
        ORDER BY seq
    LOOP
        PERFORM 1 FROM threads AS t WHERE t.thread_id = cand.thread_id FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        SELECT * INTO got FROM runs AS r WHERE r.seq = cand.seq
            AND ((r.status = 'running' AND r.lease_expires_at < horizon)
                 OR (r.status = 'pending' AND r.cancel_action IS NOT NULL
                     AND COALESCE(r.cancel_requested_at, '-infinity') < horizon))
            FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        o_owner := got.owner;
        IF got.cancel_action IS NOT NULL THEN
            o_outcome := CASE WHEN got.cancel_action = 'rollback' THEN 'rollback'
                              ELSE 'interrupted' END;
            UPDATE runs SET status = 'interrupted', lease_expires_at = NULL, updated_at = p_now
            WHERE seq = cand.seq RETURNING * INTO got;
            PERFORM gw_thread_after_run_v1(cand.thread_id, p_now, false, NULL, NULL, NULL,
                                           NULL, NULL);
        ELSIF got.attempt >= p_max_attempts THEN
            o_outcome := 'error';
            UPDATE runs SET status = 'error', lease_expires_at = NULL, updated_at = p_now
            WHERE seq = cand.seq RETURNING * INTO got;
            UPDATE threads SET error = jsonb_build_object(
                    'error', 'MaxAttemptsExceeded',
                    'message', format('run lost its process (a crash or an expired lease) '
                                      '%s times; giving up', got.attempt)),
                rest_status = 'error',
                status = CASE WHEN EXISTS (SELECT 1 FROM runs WHERE thread_id = cand.thread_id
                                           AND status IN ('pending', 'running'))
                              THEN 'busy' ELSE 'error' END,
                updated_at = p_now, state_updated_at = p_now
            WHERE thread_id = cand.thread_id;
        ELSE
            o_outcome := 'requeued';
            UPDATE runs SET status = 'pending', attempt = attempt + 1, owner = NULL,
                lease_token = NULL, lease_expires_at = NULL, updated_at = p_now
            WHERE seq = cand.seq RETURNING * INTO got;
            PERFORM gw_thread_after_run_v1(cand.thread_id, p_now, false, NULL, NULL, NULL,
                                           NULL, NULL);
        END IF;
        o_run := got;
        swept := true;
        RETURN NEXT;
    END LOOP;
    IF swept THEN
        PERFORM pg_notify('gw_runs', '');
    END IF;
END $fn$;
"""

# Version 3: admission that leases the run it starts (functions only, as version 2).
MIGRATION_V3 = """
-- admit_run, and when the new run starts at once (an idle thread, no delay) take its lease for
-- p_owner in the same transaction: the cluster's fast path (one transaction, not an admission
-- then a claim). Rows: one per run already active (o_token NULL), or one row (o_run NULL) with
-- the new run's lease token, NULL if it stayed pending.
CREATE OR REPLACE FUNCTION gw_admit_run_leased_v1(
    p_run text, p_thread text, p_assistant text, p_graph text, p_status text,
    p_metadata jsonb, p_kwargs jsonb, p_strategy text, p_created_at text, p_updated_at text,
    p_attempt integer, p_cancel_action text, p_on_completion text, p_not_before text,
    p_create_thread boolean, p_thread_meta jsonb, p_require_interrupted boolean,
    p_owner text, p_lease_s double precision
) RETURNS TABLE (o_token uuid, o_run runs) LANGUAGE plpgsql AS $fn$
DECLARE
    active runs[];
    token uuid;
BEGIN
    active := ARRAY(SELECT a FROM gw_admit_run_v1(
        p_run, p_thread, p_assistant, p_graph, p_status, p_metadata, p_kwargs, p_strategy,
        p_created_at, p_updated_at, p_attempt, p_cancel_action, p_on_completion, p_not_before,
        p_create_thread, p_thread_meta, p_require_interrupted,
        p_owner IS NOT NULL AND p_not_before IS NULL) AS a);
    IF cardinality(active) = 0 AND p_owner IS NOT NULL AND p_not_before IS NULL THEN
        UPDATE runs SET owner = p_owner, lease_token = gen_random_uuid(),
            lease_expires_at = now() + make_interval(secs => p_lease_s)
        WHERE run_id = p_run AND status = 'running' RETURNING lease_token INTO token;
    END IF;
    IF cardinality(active) = 0 THEN
        o_token := token;
        o_run := NULL;
        RETURN NEXT;
    END IF;
    FOREACH o_run IN ARRAY active LOOP
        o_token := NULL;
        RETURN NEXT;
    END LOOP;
END $fn$;
"""
