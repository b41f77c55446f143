-- Up Migration
-- Tenants take turns with delayed jobs too. 0997 placed a job after its
-- tenant's last *due* waiting job, whatever the job's own run_at: a tenant's
-- jobs enqueued to run later (enqueueJob's runAt) all took the same turn,
-- and once due they held every other tenant's job enqueued at that turn
-- behind all of them (run_at order within a turn), the very backlog 0997
-- meant to break up. A job now goes one past its tenant's last waiting job
-- due no later than itself: a burst of delayed jobs takes one turn per job,
-- in the order they were enqueued.
-- That lookup passed over the tenant's jobs due later (its retries waiting
-- out their backoff at the turns of their jobs, during a provider outage)
-- one heap row at a time: run_at was not in storekeep_jobs_tenant_turn_idx,
-- so each enqueue inside a business transaction read every one of them.
-- `migrate` now makes storekeep_jobs_tenant_turn_due_idx on (tenant,
-- priority, run_at), which checks run_at in the index.
CREATE OR REPLACE FUNCTION enqueue_job(
  p_task text,
  p_payload jsonb,
  p_run_at timestamptz DEFAULT NULL,
  p_max_attempts integer DEFAULT NULL,
  p_job_key text DEFAULT NULL,
  p_job_key_mode text DEFAULT 'replace'
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  job_id bigint;
  waiting_id bigint;
  turn integer;
  tenant_last integer;
BEGIN
  IF p_task !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' THEN
    RAISE EXCEPTION 'job task name % is not valid', p_task USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- A tenant's job is enqueued only in that tenant's transaction (its
  -- app.tenant_id set, as every command and job command sets it): a request
  -- of one tenant can only enqueue work for that tenant, and a session with
  -- no tenant set cannot enqueue work for any.
  IF (p_payload ->> 'tenant_id') IS NOT NULL AND current_tenant_id() IS NULL THEN
    RAISE EXCEPTION 'a job for a tenant is enqueued only in a transaction of that tenant (app.tenant_id is not set)' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (p_payload ->> 'tenant_id') IS NOT NULL AND (p_payload ->> 'tenant_id')::uuid <> current_tenant_id() THEN
    RAISE EXCEPTION 'a job for another tenant cannot be enqueued' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_job_key_mode = 'keep_waiting' THEN
    IF p_job_key IS NULL THEN
      RAISE EXCEPTION 'keep_waiting needs a job key' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT j.id INTO waiting_id FROM graphile_worker._private_jobs j
    WHERE j.key = p_job_key AND j.locked_at IS NULL AND j.attempts < j.max_attempts
      AND (j.payload::jsonb ->> 'tenant_id') IS NOT DISTINCT FROM (p_payload ->> 'tenant_id')
    FOR UPDATE;
    IF waiting_id IS NOT NULL THEN
      RETURN waiting_id;
    END IF;
    p_job_key_mode := 'preserve_run_at';
  END IF;
  IF (p_payload ->> 'tenant_id') IS NOT NULL THEN
    -- The current turn: the first due job the queue would claim (jobs_main_index).
    SELECT j.priority INTO turn FROM graphile_worker._private_jobs j
    WHERE j.is_available AND j.run_at <= now()
    ORDER BY j.priority, j.run_at LIMIT 1;
    -- The tenant's last waiting job due no later than this one (not the one this replaces).
    SELECT j.priority INTO tenant_last FROM graphile_worker._private_jobs j
    WHERE j.is_available AND (j.payload ->> 'tenant_id') = (p_payload ->> 'tenant_id')
      AND j.run_at <= greatest(coalesce(p_run_at, now()), now()) AND (p_job_key IS NULL OR j.key IS DISTINCT FROM p_job_key)
    ORDER BY j.priority DESC LIMIT 1;
    turn := least(32767, greatest(coalesce(turn, 0), coalesce(tenant_last + 1, 0)));
    -- preserve_run_at keeps a waiting job's place (add_job keeps its run_at
    -- when it has not run yet): its turn too.
    IF p_job_key IS NOT NULL AND p_job_key_mode = 'preserve_run_at' THEN
      SELECT coalesce(max(j.priority), turn) INTO turn FROM graphile_worker._private_jobs j
      WHERE j.key = p_job_key AND j.locked_at IS NULL AND j.attempts = 0;
    END IF;
  END IF;
  SELECT (graphile_worker.add_job(
    p_task, p_payload::json,
    run_at => p_run_at, max_attempts => p_max_attempts, job_key => p_job_key, job_key_mode => p_job_key_mode,
    priority => coalesce(turn, 0)
  )).id INTO job_id;
  RETURN job_id;
END
$$;
