-- Up Migration
-- Reorder levels: per store and SKU, the stock (in the SKU's base units) at
-- or below which the SKU is to be reordered (PUT
-- /v1/stores/{store_id}/stock/{sku_id}/reorder-level; listed by GET
-- /v1/stores/{store_id}/stock/low).
--
-- A row per pair ever given a level; `quantity` NULL when the level was
-- removed. The row is kept (never deleted) so that it is the lock every
-- change of the pair's level takes: a change inserts the row if missing (ON
-- CONFLICT DO NOTHING), then locks it (FOR UPDATE) and reads the level it
-- replaces, so concurrent changes take turns and each audit event's `before`
-- is the previous one's `after`. Kept apart from stock_balances: a level is
-- not stock, and a balance row is the sales' hot lock (and exists only once
-- the store held the SKU).

CREATE TABLE stock_reorder_levels (
  tenant_id uuid NOT NULL,
  store_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  -- Base units (grams, pieces, millimetres); NULL: no level (removed).
  quantity bigint CHECK (quantity BETWEEN 0 AND 1000000000000000),
  -- The operation that made the row (immutable, as every row's op_id), and
  -- the one that last changed its level.
  op_id uuid NOT NULL,
  changed_by_op uuid NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- The store's levels in SKU order: the low-stock list walks this key from its cursor.
  PRIMARY KEY (tenant_id, store_id, sku_id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, changed_by_op) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('stock_reorder_levels');
REVOKE DELETE ON stock_reorder_levels FROM storekeep_app;
CREATE TRIGGER stock_reorder_levels_immutable BEFORE UPDATE ON stock_reorder_levels
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'store_id', 'sku_id', 'op_id');
