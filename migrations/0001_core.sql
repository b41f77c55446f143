-- Up Migration
-- Core: tenancy, tokens, operations, the append-only audit log, idempotency
-- records, and the reusable guards every later table uses:
--   enable_tenant_rls(table)                 row-level security by app.tenant_id
--   forbid_update_delete()                   append-only tables (ledgers, events)
--   forbid_column_change('col', …)           immutable columns (op_id, tenant_id …)

-- The role every request runs as. It is not a superuser, cannot bypass RLS and
-- owns no table, so row-level security always applies to it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'storekeep_app') THEN
    CREATE ROLE storekeep_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END
$$;
GRANT storekeep_app TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO storekeep_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO storekeep_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO storekeep_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO storekeep_app;

CREATE FUNCTION current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT nullif(current_setting('app.tenant_id', true), '')::uuid
$$;

-- Row-level security on a table with a tenant_id column: a session sees and
-- writes only rows of the tenant set with SET LOCAL app.tenant_id. With no
-- tenant set it sees nothing.
CREATE FUNCTION enable_tenant_rls(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
  EXECUTE format(
    'CREATE POLICY tenant_isolation ON %s USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())',
    target);
END
$$;

CREATE FUNCTION forbid_update_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

-- BEFORE UPDATE trigger; the arguments name the columns that may never change.
CREATE FUNCTION forbid_column_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  column_name text;
  old_row jsonb := to_jsonb(OLD);
  new_row jsonb := to_jsonb(NEW);
BEGIN
  FOREACH column_name IN ARRAY TG_ARGV LOOP
    IF old_row -> column_name IS DISTINCT FROM new_row -> column_name THEN
      RAISE EXCEPTION '%.% is immutable', TG_TABLE_NAME, column_name
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END LOOP;
  RETURN NEW;
END
$$;

CREATE TABLE tenants (
  id uuid PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- Tenant-level settings (bulk sale threshold, geofence radius …); each
  -- module reads its own keys with a default.
  settings jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = current_tenant_id()) WITH CHECK (id = current_tenant_id());

-- The system tenant holds the operator's own records (tenant creation).
INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-000000000000', 'system');

CREATE TABLE operations (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  type text NOT NULL,
  actor_token_id uuid,
  actor text NOT NULL,
  correlation_id text NOT NULL,
  idempotency_key text,
  request_fingerprint text,
  store_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  reverted_by uuid,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, reverted_by) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('operations');
CREATE INDEX operations_created_idx ON operations (tenant_id, created_at);

-- Only reverted_by (and store_id, for commands that learn their store while
-- running) may change, once, from empty to set; nothing is deleted.
CREATE FUNCTION operations_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'operations are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (to_jsonb(NEW) - 'reverted_by' - 'store_id') IS DISTINCT FROM (to_jsonb(OLD) - 'reverted_by' - 'store_id')
     OR (OLD.reverted_by IS NOT NULL AND NEW.reverted_by IS DISTINCT FROM OLD.reverted_by)
     OR (OLD.store_id IS NOT NULL AND NEW.store_id IS DISTINCT FROM OLD.store_id) THEN
    RAISE EXCEPTION 'an operation is immutable except for being marked reverted once (and its store set once)'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER operations_guard BEFORE UPDATE OR DELETE ON operations
  FOR EACH ROW EXECUTE FUNCTION operations_guard();

-- The audit log: one row per command plus one per subject it changed
-- (before/after). Append-only, enforced here for every role that does not
-- disable triggers (only a superuser can).
CREATE TABLE events (
  tenant_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  op_id uuid NOT NULL,
  type text NOT NULL,
  actor text NOT NULL,
  correlation_id text NOT NULL,
  store_id uuid,
  subject_type text,
  subject_id text,
  payload jsonb,
  before jsonb,
  after jsonb,
  effects jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('events');
CREATE INDEX events_op_idx ON events (tenant_id, op_id);
CREATE INDEX events_subject_idx ON events (tenant_id, subject_type, subject_id, id);
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE api_tokens (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  role text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'cashier', 'field_agent', 'auditor')),
  -- NULL: every store of the tenant.
  store_ids uuid[],
  -- SHA-256 of the token; the token itself is shown once and never stored.
  token_hash bytea NOT NULL UNIQUE,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('api_tokens');
CREATE TRIGGER api_tokens_immutable BEFORE UPDATE ON api_tokens
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'token_hash', 'op_id', 'created_at');

-- Authentication happens before the tenant is known, so the lookup by hash is
-- a SECURITY DEFINER function (run as the table owner, to whom RLS does not
-- apply) that returns only the one matching, unrevoked token.
CREATE FUNCTION find_api_token(hash bytea)
RETURNS TABLE (tenant_id uuid, id uuid, name text, role text, store_ids uuid[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT t.tenant_id, t.id, t.name, t.role, t.store_ids
  FROM api_tokens t
  WHERE t.token_hash = hash AND t.revoked_at IS NULL
$$;

-- The operator's token when STOREKEEP_ROOT_TOKEN is not set: generated once
-- per database, so every process against that database accepts the same one.
CREATE TABLE operator_tokens (
  token_hash bytea PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE INSERT, UPDATE, DELETE ON operator_tokens FROM storekeep_app;

CREATE TABLE idempotency_keys (
  tenant_id uuid NOT NULL,
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  fingerprint text NOT NULL,
  op_id uuid NOT NULL,
  response_status integer NOT NULL,
  response_body jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('idempotency_keys');
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- Expired keys are housekeeping, not business records: removed across all
-- tenants by this owner-run function (the app role sees one tenant at a time).
CREATE FUNCTION purge_expired_idempotency_keys(batch integer DEFAULT 10000) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  removed integer;
BEGIN
  DELETE FROM idempotency_keys
  WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT batch);
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO storekeep_app;
REVOKE INSERT, UPDATE, DELETE ON operator_tokens FROM storekeep_app;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM storekeep_app;
