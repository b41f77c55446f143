-- Up Migration
-- A database moved to another server by dump and restore keeps the
-- transaction ids its rows hold (sales.created_xid, sales.voided_xid) and the
-- snapshots (daily_sales_rollup_progress.changes_snapshot,
-- daily_sales_rollups.computed_snapshot), but the new server counts its own
-- transaction ids from its start: usually far below the stored ones. Every
-- sale made after the move then had an id below the catch-up's snapshot's
-- xmin, so the nightly catch-up never read it (the daily figures stopped
-- changing), and the figures' snapshots "saw" it (their xmin above it) though
-- they never counted it.
--
-- An id at or above this server's next one (pg_snapshot_xmax of the current
-- snapshot) was never handed out here: it is another server's. The catch-up
-- (catchUpDailySales) clears such ids on its first run after a move, as if
-- the change predated migration 0900 (NULL: made before every snapshot taken
-- here), which needs this trigger to let an UPDATE clear them — and only
-- them: an id this server handed out is still kept whatever an UPDATE names.
CREATE OR REPLACE FUNCTION sales_stamp_change_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  next_here xid8 := pg_snapshot_xmax(pg_current_snapshot());
BEGIN
  NEW.created_xid := CASE WHEN NEW.created_xid IS NULL AND OLD.created_xid >= next_here THEN NULL ELSE OLD.created_xid END;
  NEW.voided_xid := CASE
    WHEN OLD.status = 'completed' AND NEW.status = 'voided' THEN pg_current_xact_id()
    WHEN NEW.voided_xid IS NULL AND OLD.voided_xid >= next_here THEN NULL
    ELSE OLD.voided_xid END;
  RETURN NEW;
END
$$;
