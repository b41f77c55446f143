-- Up Migration
-- Stock history: daily balance snapshots, so "stock as of a moment" reads one
-- snapshot row plus the ledger rows of at most the last few days, whatever the
-- size of the ledger.
--
-- stock_snapshots(snapshot_date = D) is the balance at the end of UTC day D:
-- the sum of every ledger row with created_at < D + 1 day. It is computed from
-- the ledger (previous snapshot + that day's rows), never copied from the live
-- balance, so it is exact by construction; only days that ended long enough
-- ago that no transaction can still commit rows into them are snapshotted.
CREATE TABLE stock_snapshots (
  tenant_id uuid NOT NULL,
  store_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  snapshot_date date NOT NULL,
  quantity bigint NOT NULL CHECK (quantity >= 0),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, store_id, sku_id, snapshot_date),
  FOREIGN KEY (tenant_id, store_id, sku_id) REFERENCES stock_balances (tenant_id, store_id, sku_id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('stock_snapshots');
CREATE INDEX stock_snapshots_date_idx ON stock_snapshots (tenant_id, snapshot_date);
CREATE TRIGGER stock_snapshots_append_only BEFORE UPDATE OR DELETE ON stock_snapshots
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

-- The ledger delta after a snapshot is an index range scan on this.
CREATE INDEX stock_ledger_history_idx ON stock_ledger (tenant_id, store_id, sku_id, created_at) INCLUDE (quantity_change);

-- The nightly job snapshots every tenant; the app role sees one tenant at a
-- time, so the list of tenants holding stock comes from this owner-run function.
CREATE FUNCTION tenants_with_stock() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT DISTINCT tenant_id FROM stock_balances
$$;

GRANT SELECT, INSERT ON stock_snapshots TO storekeep_app;
