-- Up Migration
-- When a stock count held its balance rows: `held_at`, the server's clock
-- read by the count right after it locked every balance row it counts
-- (src/inventory/countStock.ts; its counted_at is at most this less a
-- microsecond). Every stock ledger row is stamped (clock_timestamp(),
-- migration 0816) by the statement that moves its balance row, under that
-- row's lock, so for a ledger row of a pair the count holds:
--
--   * written before the count got the lock: stamped before it, then
--     committed, then the lock granted, then held_at read — created_at < held_at;
--   * written after: its writer waited for the count's commit — created_at > held_at.
--
-- So "this count was recorded before that ledger row" is exactly
-- held_at < created_at, for every line of the count, even one of variance 0
-- that wrote no ledger row of its own. A synced sale the till made at or
-- before counted_at, a void or a return with the till's time at or before
-- it, whose row came after held_at, read the count on its balance row and
-- must carry its count_correction row: the integrity check
-- covered_sale_has_count_correction (src/inventory/integrity.ts) finds one
-- that does not.
ALTER TABLE stock_counts ADD COLUMN held_at timestamptz;

-- Counts recorded before this migration: a moment of their own transaction
-- after their locks and before their commit has the same property. Their
-- audit events are stamped when written, at the end of the command, after
-- every lock (migration 0823); failing those, their count ledger rows
-- (written under the locks). A count with neither keeps no held_at, and the
-- check cannot tell which operations it covered.
ALTER TABLE stock_counts DISABLE TRIGGER stock_counts_append_only;
UPDATE stock_counts c
SET held_at = coalesce(
  (SELECT min(e.created_at) FROM events e WHERE e.tenant_id = c.tenant_id AND e.op_id = c.op_id),
  (SELECT min(l.created_at) FROM stock_ledger l WHERE l.kind = 'count' AND l.tenant_id = c.tenant_id AND l.op_id = c.op_id));
ALTER TABLE stock_counts ENABLE TRIGGER stock_counts_append_only;

-- Every count recorded from now on has it, after its counted_at (NOT VALID:
-- a count of before this migration without either stamp is kept as it is).
ALTER TABLE stock_counts ADD CONSTRAINT stock_counts_held_after_counted CHECK (held_at IS NOT NULL AND held_at > counted_at) NOT VALID;

-- The counts of a store by counted_at: the check looks, for each row of a
-- till-timed operation, for a count of the store whose counted_at lies
-- between the till's time and the row's stamp (a count covering the
-- operation and recorded before the row has counted_at < held_at < the
-- row's created_at): an index range as short as the till was offline.
CREATE INDEX stock_counts_store_counted_idx ON stock_counts (tenant_id, store_id, counted_at) INCLUDE (held_at, id);
