-- Up Migration
-- How far the scheduled daily sales rollup has caught up, per tenant.
--
-- Every change the figures count — a sale recorded (sales.created_at) or
-- voided (sales.voided_at) — stamped before changes_through is in the figures
-- of its store-day: the run that moved changes_through here looked at every
-- change since the previous value and recomputed each store-day whose figures
-- were computed before it (or within the settle margin after it), in the same
-- transaction as this row. The next run looks only at changes since, through
-- the indexes the sale path already keeps (sales by store and created_at,
-- operations by created_at): nothing is written by a sale or a void.
-- A tenant with no row has never been caught up: its first run looks at all
-- its sales.
CREATE TABLE daily_sales_rollup_progress (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  changes_through timestamptz NOT NULL,
  -- First written by op_id; last moved by updated_by_op.
  op_id uuid NOT NULL,
  updated_by_op uuid NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, updated_by_op) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('daily_sales_rollup_progress');
CREATE TRIGGER daily_sales_rollup_progress_immutable BEFORE UPDATE ON daily_sales_rollup_progress
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'op_id');
REVOKE DELETE ON daily_sales_rollup_progress FROM storekeep_app;
