-- Up Migration
-- The review queue: things a person must look at (integrity findings, an offline
-- sale synced into a shortage, a transfer received short, a job that gave up).
-- Financial records are never auto-fixed or deleted; they are reviewed.
CREATE TABLE review_items (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  -- What needs review: integrity_finding, offline_sale_shortage, transfer_shortfall, job_failed …
  kind text NOT NULL,
  severity text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
  subject_type text,
  subject_id text,
  store_id uuid,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Same dedupe_key while open = the same problem seen again (not a new item).
  dedupe_key text,
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz,
  resolved_by_op uuid,
  resolution_note text,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, resolved_by_op) REFERENCES operations (tenant_id, id),
  CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
SELECT enable_tenant_rls('review_items');
CREATE INDEX review_items_open_idx ON review_items (tenant_id, status, created_at);
CREATE UNIQUE INDEX review_items_open_dedupe_idx ON review_items (tenant_id, dedupe_key) WHERE status = 'open' AND dedupe_key IS NOT NULL;
CREATE TRIGGER review_items_immutable BEFORE UPDATE ON review_items
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'kind', 'subject_type', 'subject_id', 'detail', 'op_id', 'created_at');
CREATE TRIGGER review_items_no_delete BEFORE DELETE ON review_items
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
