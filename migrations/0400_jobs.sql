-- Up Migration
-- Jobs: graphile-worker's own schema (graphile_worker.*) is installed by
-- src/core/migrate.ts right after these SQL files. The app role gets no right
-- on that schema at all; it enqueues through this one function, which runs as
-- the owner (SECURITY DEFINER) on the caller's connection — so the job is part
-- of the business transaction and vanishes with it on rollback.
-- (plpgsql resolves graphile_worker.add_job at call time, so this function may
-- be created before graphile-worker's schema exists.)
CREATE FUNCTION enqueue_job(
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
BEGIN
  IF p_task !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' THEN
    RAISE EXCEPTION 'job task name % is not valid', p_task USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- A request of one tenant can only enqueue work for that tenant.
  IF current_tenant_id() IS NOT NULL AND (p_payload ->> 'tenant_id') IS NOT NULL
     AND (p_payload ->> 'tenant_id')::uuid <> current_tenant_id() THEN
    RAISE EXCEPTION 'a job for another tenant cannot be enqueued' USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT (graphile_worker.add_job(
    p_task, p_payload::json,
    run_at => p_run_at, max_attempts => p_max_attempts, job_key => p_job_key, job_key_mode => p_job_key_mode
  )).id INTO job_id;
  RETURN job_id;
END
$$;
REVOKE EXECUTE ON FUNCTION enqueue_job(text, jsonb, timestamptz, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION enqueue_job(text, jsonb, timestamptz, integer, text, text) TO storekeep_app;
