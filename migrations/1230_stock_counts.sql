-- Up Migration
-- Stock counts (stocktakes) taken while the shop stays open. A count
-- (POST /v1/stores/{id}/stock/counts) names, per SKU, what was on the shelf
-- at `counted_at`; in one transaction it
--
--   * locks the SKUs' balance rows, then reads the stock each had at
--     `counted_at` (expected_quantity: the quantity_after of the pair's last
--     stock ledger row stamped at or before it, plus the variances of earlier
--     counts of the SKU, counted at or before it, that were recorded after
--     it); a count at or before the counted_at of a count already recorded
--     for one of its SKUs is refused (that count already set the stock);
--   * moves each balance by variance = counted - expected (sales and receipts
--     after counted_at are kept, not undone), through one stock ledger row of
--     kind `count` per line whose variance is not 0;
--   * writes one `stock_counts` row and one `stock_count_lines` row per line
--     (what was counted, expected, the variance and the balance left), so a
--     manager can see the variances later.
--
-- The integrity check stock_count_matches_ledger (src/inventory/integrity.ts)
-- holds the lines and the `count` ledger rows to each other.

CREATE TABLE stock_counts (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  -- The moment the shelf was counted (the client's, at most the moment the
  -- balances were locked: see src/inventory/countStock.ts).
  counted_at timestamptz NOT NULL,
  reference text CHECK (length(reference) <= 200),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  -- One count per operation.
  UNIQUE (tenant_id, op_id),
  -- What its lines name: a line's operation is its count's.
  UNIQUE (tenant_id, op_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('stock_counts');
-- A store's counts, newest first (ids are time-ordered UUIDs).
CREATE INDEX stock_counts_store_idx ON stock_counts (tenant_id, store_id, id);
CREATE TRIGGER stock_counts_append_only BEFORE UPDATE OR DELETE ON stock_counts
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE stock_count_lines (
  tenant_id uuid NOT NULL,
  count_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  -- Base units (grams, pieces, millimetres) on the shelf at counted_at.
  counted_quantity bigint NOT NULL CHECK (counted_quantity BETWEEN 0 AND 1000000000000000),
  -- The stock the ledger held at counted_at.
  expected_quantity bigint NOT NULL CHECK (expected_quantity >= 0),
  variance bigint NOT NULL,
  -- The balance the count left (the current balance moved by the variance).
  quantity_after bigint NOT NULL CHECK (quantity_after >= 0),
  -- The `count` stock ledger row that moved the balance; none for variance 0.
  ledger_id bigint,
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, count_id, sku_id),
  FOREIGN KEY (tenant_id, op_id, count_id) REFERENCES stock_counts (tenant_id, op_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, ledger_id) REFERENCES stock_ledger (tenant_id, id),
  CHECK (variance = counted_quantity - expected_quantity),
  CHECK ((ledger_id IS NULL) = (variance = 0))
);
SELECT enable_tenant_rls('stock_count_lines');
-- The counts of a SKU (then of its store, through the count): a new count
-- reads the earlier ones of each SKU it counts.
CREATE INDEX stock_count_lines_sku_idx ON stock_count_lines (tenant_id, sku_id, count_id);
CREATE TRIGGER stock_count_lines_append_only BEFORE UPDATE OR DELETE ON stock_count_lines
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

-- History is insert-only for the app role (the triggers hold for every role).
REVOKE UPDATE, DELETE ON stock_counts, stock_count_lines FROM storekeep_app;

-- The `count` ledger rows: a small fraction of the ledger (as
-- stock_ledger_consignment_idx). A count reads when earlier counts' rows of
-- its SKUs were stamped, and the integrity check finds count rows with no
-- count behind them, through this index, never the sale and receipt rows.
CREATE INDEX stock_ledger_count_idx ON stock_ledger (tenant_id, op_id, store_id, sku_id) INCLUDE (quantity_change, quantity_after, created_at)
  WHERE kind = 'count';
