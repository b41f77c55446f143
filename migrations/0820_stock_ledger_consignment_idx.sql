-- Up Migration
-- The integrity checks consignment_stock_matches_ledger and
-- consignment_settlement_matches_ledger sum the consignment rows of the stock
-- ledger (kinds consignment_out and consignment_return). With no index on the
-- kind, each read the whole stock ledger — every tenant's, even when
-- GET /v1/integrity checks one tenant. Only consignment rows are indexed (a
-- small fraction of the ledger, like stock_ledger_transfer_reason_idx), so
-- the checks stay linear in consignments, not in ledger rows.
CREATE INDEX stock_ledger_consignment_idx ON stock_ledger (tenant_id, kind, op_id, store_id, sku_id) INCLUDE (quantity_change)
  WHERE kind IN ('consignment_out', 'consignment_return');
