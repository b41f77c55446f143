-- Up Migration
-- The integrity check transfer_stock_ledger_matches looks for transfer ledger
-- rows that name a transfer (reason 'transfer <id>') but were not written by
-- its approval or receipt. Only transfer rows are indexed (a small fraction of
-- the ledger), so the check stays linear in transfers, not in ledger rows.
CREATE INDEX stock_ledger_transfer_reason_idx ON stock_ledger (tenant_id, reason) WHERE kind IN ('transfer_out', 'transfer_in');
