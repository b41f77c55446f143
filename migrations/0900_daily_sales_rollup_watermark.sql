-- Up Migration
-- The daily sales rollup's watermark: which changes to the sales (a sale
-- recorded, a sale voided) its catch-up has seen, exact whatever order the
-- changes commit in, and found through an index — so the catch-up and the
-- integrity check daily_sales_rollup_stale read the changes since the last
-- catch-up, never all of a tenant's sales.
--
-- Before, the watermark was a time (changes_through): every change stamped
-- before it was taken as seen. A change is stamped when its transaction
-- BEGAN (now()), and may commit long after, so the catch-up kept a 5-minute
-- settle margin and trusted no transaction to run longer — a bound nothing
-- enforces (statement_timeout bounds one statement, not a transaction of
-- many). And the stale check, to be sure of "every change", read every sale.
-- A sequence or an ascending id has the same flaw: ids are handed out in one
-- order and committed in another, so "every id below the highest one read"
-- misses a smaller id still in flight.
--
-- Now the watermark is a PostgreSQL snapshot (pg_snapshot), and each change
-- carries the id of the transaction that made it (xid8, 64-bit: it never
-- wraps). A snapshot says of every transaction id whether it had finished
-- when the snapshot was taken (pg_visible_in_snapshot); the ids below its
-- xmin all had. So:
--
--   * a change is SEEN by the catch-up iff its transaction is visible in the
--     snapshot of the statement that read the changes
--     (daily_sales_rollup_progress.changes_snapshot);
--   * the next run reads the changes whose transaction id is at least that
--     snapshot's xmin (an index range) and not visible in it — exactly the
--     changes the last run did not see, however late they committed: one
--     still in flight then is in the snapshot's in-progress list (or above
--     its xmax) and is read now;
--   * figures COUNT a change iff its transaction is visible in the snapshot
--     of the statement that computed them
--     (daily_sales_rollups.computed_snapshot) — no settle margin.
--
-- What a sale writes for this: nothing in its code. created_xid is a column
-- default (the sale's own transaction id); voided_xid is stamped by a
-- trigger when a sale is voided. Each has an index per tenant (the
-- created one gains one entry per sale; a void, which updates an indexed
-- column, is no longer a HOT update — voids are a small share of sales).
ALTER TABLE sales
  ADD COLUMN created_xid xid8,
  ADD COLUMN voided_xid xid8;
-- Existing rows keep NULL: changed before this migration. For a tenant the
-- catch-up had run for, the changes its time watermark had not yet passed
-- (stamped at or after changes_through) are stamped with this migration's
-- transaction, so its first run on the snapshot watermark sees them; the
-- others it had seen. (A tenant with no progress row looks at every sale on
-- its first run, as before.) One pass over the sales, once.
UPDATE sales s SET created_xid = pg_current_xact_id()
FROM daily_sales_rollup_progress p
WHERE s.tenant_id = p.tenant_id AND s.created_at >= p.changes_through;
UPDATE sales s SET voided_xid = pg_current_xact_id()
FROM daily_sales_rollup_progress p
WHERE s.tenant_id = p.tenant_id AND s.voided_at >= p.changes_through;

ALTER TABLE sales ALTER COLUMN created_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX sales_created_xid_idx ON sales (tenant_id, created_xid) WHERE created_xid IS NOT NULL;
CREATE INDEX sales_voided_xid_idx ON sales (tenant_id, voided_xid) WHERE voided_xid IS NOT NULL;

-- created_xid never changes once recorded; voided_xid is the voiding
-- transaction's id, set by the void (completed → voided) and never after.
-- Whatever an UPDATE names, these are what the row keeps.
CREATE FUNCTION sales_stamp_change_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.created_xid := OLD.created_xid;
  NEW.voided_xid := CASE WHEN OLD.status = 'completed' AND NEW.status = 'voided' THEN pg_current_xact_id() ELSE OLD.voided_xid END;
  RETURN NEW;
END
$$;
CREATE TRIGGER sales_stamp_change_xid BEFORE UPDATE ON sales
  FOR EACH ROW EXECUTE FUNCTION sales_stamp_change_xid();

-- The snapshot of the catch-up's last read of the changes: every change
-- whose transaction is visible in it is in its store-day's figures. A row
-- written before this (or without it) has seen none of the changes that
-- carry a transaction id ('3:3:' — 3 is the first normal transaction id: every
-- real one is at or above its xmax, so none is visible); the changes
-- without one (before this migration) it had.
ALTER TABLE daily_sales_rollup_progress ADD COLUMN changes_snapshot pg_snapshot NOT NULL DEFAULT '3:3:';
COMMENT ON COLUMN daily_sales_rollup_progress.changes_snapshot IS
  'Snapshot of the last catch-up''s read of the changes: every sale change (created_xid, voided_xid) visible in it is counted in its store-day''s figures.';
COMMENT ON COLUMN daily_sales_rollup_progress.changes_through IS
  'When the last catch-up read the changes (its statement''s start): every change committed before this is counted (informational: the watermark is changes_snapshot).';

-- The snapshot the figures were computed from: they count every sale change
-- whose transaction is visible in it (and every change without an id, made
-- before this migration). NULL: computed before this migration (or written
-- by hand): judged as before, by time — a change stamped more than the settle
-- margin (5 minutes) before computed_at is counted.
ALTER TABLE daily_sales_rollups ADD COLUMN computed_snapshot pg_snapshot;
