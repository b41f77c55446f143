-- Up Migration
-- A void (POST /v1/sales/{id}/void) or a return (POST /v1/sales/{id}/returns)
-- a till made at or before a stock count's counted_at — its
-- `client_created_at`, kept as sales.void_client_created_at and
-- sale_returns.client_created_at — and sent after it is given back once:
-- recorded after the count, a count_correction row takes out what its
-- void/return row put back (src/inventory/changeStock.ts,
-- correctCountedGiveBacks); recorded between counted_at and the count, the
-- count adds its rows to the expected quantity (src/inventory/countStock.ts).
-- The count finds them from the pair's ledger rows stamped after counted_at
-- while it holds the balance rows: each void row's operation is looked up
-- among the voids by voided_by_op (no index had it), each return row's among
-- the returns by op_id. Partial, of the till-timed ones alone, with their
-- till time: an online void or return adds no entry, and its rows are
-- dismissed from the index without reading the sale or the return. The
-- integrity check count_correction_matches_sale reads them by operation too.
CREATE INDEX sales_till_void_op_idx ON sales (tenant_id, voided_by_op) INCLUDE (void_client_created_at)
  WHERE void_client_created_at IS NOT NULL;
CREATE INDEX sale_returns_till_op_idx ON sale_returns (tenant_id, op_id) INCLUDE (client_created_at)
  WHERE client_created_at IS NOT NULL;
