-- Up Migration
-- Daily sales figures per store, rolled up by the worker (analytics.rollup)
-- from the sales themselves: a derived table, recomputed idempotently (a run
-- for a day replaces that day's figures), never the source of truth.
CREATE TABLE daily_sales_rollups (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  -- UTC calendar day of the sales' created_at.
  business_date date NOT NULL,
  sales_count bigint NOT NULL CHECK (sales_count >= 0),
  voided_count bigint NOT NULL CHECK (voided_count >= 0 AND voided_count <= sales_count),
  -- Total of the day's sales that are not voided, in minor units.
  revenue bigint NOT NULL CHECK (revenue >= 0),
  -- First computed by op_id; last recomputed by computed_by_op.
  op_id uuid NOT NULL,
  computed_by_op uuid NOT NULL,
  computed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, store_id, business_date),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, computed_by_op) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('daily_sales_rollups');
CREATE TRIGGER daily_sales_rollups_immutable BEFORE UPDATE ON daily_sales_rollups
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'store_id', 'business_date', 'op_id');
REVOKE DELETE ON daily_sales_rollups FROM storekeep_app;
