-- Up Migration
-- A stock count adds to the stock its store's ledger held at counted_at the
-- variances of earlier counts of the SKU whose rows were stamped after that
-- moment (src/inventory/countStock.ts). It finds those counts from the pair's
-- count rows stamped after counted_at: through this index it reads only
-- them, not every move of the pair since counted_at (a count may look 7 days
-- back) nor every count the SKU ever had — and it reads them while it holds
-- the pairs' balance rows, which the tills' sales wait for. Only count rows
-- are indexed (a small fraction of the ledger, like stock_ledger_count_idx),
-- so sales and receipts write nothing more.
CREATE INDEX stock_ledger_count_history_idx ON stock_ledger (tenant_id, store_id, sku_id, created_at) INCLUDE (op_id)
  WHERE kind = 'count';
