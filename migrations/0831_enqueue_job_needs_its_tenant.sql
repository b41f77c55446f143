-- Up Migration
-- enqueue_job accepted a job for any tenant from a session with no tenant set
-- (app.tenant_id unset): only the tenant check of a session WITH a tenant
-- refused another tenant's job. Every path of the app enqueues inside a
-- tenant's transaction, so a job that names a tenant now needs that tenant
-- set; a job that names none (system work) is unchanged.
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
  SELECT (graphile_worker.add_job(
    p_task, p_payload::json,
    run_at => p_run_at, max_attempts => p_max_attempts, job_key => p_job_key, job_key_mode => p_job_key_mode
  )).id INTO job_id;
  RETURN job_id;
END
$$;
