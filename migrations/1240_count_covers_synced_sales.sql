-- Up Migration
-- A sale a till made offline BEFORE a stock count's counted_at, synced
-- (POST /v1/sync/sales) after it, is taken out of stock once, not twice.
-- (src/inventory/countStock.ts and src/sales/salePlan.ts; README "Stock counts".)
--
--   * Synced after the count was recorded: the count already found the goods
--     gone. The sale keeps its own `sale` ledger row, and the same statement
--     writes before it a stock ledger row of kind `count_correction`
--     (reason `count <count id>`) giving the quantity back: the sale moves the
--     balance by 0. To know, under the balance lock the sale already holds and
--     with no extra statement, whether a count covers the sale, the balance
--     row carries its latest count: `counted_through` (that count's
--     counted_at) and `counted_by` (its id), set by the count under the same
--     lock. A later count's counted_at is never earlier (an older count is
--     refused: 409), so the pair only moves forward.
--   * Synced between counted_at and the moment the count is posted: the count
--     takes the sale's net stock effect out of its expected quantity.
ALTER TABLE stock_balances
  ADD COLUMN counted_through timestamptz,
  ADD COLUMN counted_by uuid,
  ADD CONSTRAINT stock_balances_counted_by_with_moment CHECK ((counted_through IS NULL) = (counted_by IS NULL));

-- Balances counted before this migration: their latest count.
UPDATE stock_balances b SET counted_through = latest.counted_at, counted_by = latest.count_id
FROM (
  SELECT DISTINCT ON (c.tenant_id, c.store_id, y.sku_id) c.tenant_id, c.store_id, y.sku_id, c.counted_at, c.id AS count_id
  FROM stock_counts c JOIN stock_count_lines y ON y.tenant_id = c.tenant_id AND y.count_id = c.id
  ORDER BY c.tenant_id, c.store_id, y.sku_id, c.counted_at DESC
) latest
WHERE b.tenant_id = latest.tenant_id AND b.store_id = latest.store_id AND b.sku_id = latest.sku_id;

-- The count_correction rows: a small fraction of the ledger (as
-- stock_ledger_count_idx). The integrity check count_correction_matches_sale
-- reads them through this index, never the sale and receipt rows.
CREATE INDEX stock_ledger_count_correction_idx ON stock_ledger (tenant_id, op_id, store_id, sku_id) INCLUDE (quantity_change, reason, created_at)
  WHERE kind = 'count_correction';
