-- Up Migration
-- Tenants take turns in the job queue. graphile-worker claims the due jobs
-- in (priority, run_at) order (its jobs_main_index), so one tenant's burst
-- (thousands of order submissions or webhooks) held every other tenant's
-- jobs behind its whole backlog. enqueue_job now gives a tenant's job a
-- priority that is its turn: the current turn (the lowest priority of the
-- due jobs waiting), or one past the tenant's own last due waiting job if
-- that is later. A tenant with nothing waiting is served at the current
-- turn, next to the others; a tenant's backlog takes one turn per job; a
-- tenant's jobs still run in the order they were enqueued (each later one
-- has a higher priority than every due job of its tenant waiting). Jobs of
-- no tenant (system work, cron ticks) keep priority 0: before any turn.
-- The tenant's last waiting job is found through
-- storekeep_jobs_tenant_turn_idx, which `migrate` creates after
-- graphile-worker's own schema (on a fresh database that schema does not
-- exist yet when this runs); without it this is a scan of the waiting jobs.
-- Priorities are smallint: a turn past 32767 (a backlog that long, or a queue
-- that never drained for that many turns) is 32767, FIFO among those.
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
    -- The tenant's last due waiting job (not the one this replaces).
    SELECT j.priority INTO tenant_last FROM graphile_worker._private_jobs j
    WHERE j.is_available AND (j.payload ->> 'tenant_id') = (p_payload ->> 'tenant_id')
      AND j.run_at <= now() AND (p_job_key IS NULL OR j.key IS DISTINCT FROM p_job_key)
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
