-- Up Migration
-- A problem seen again while its item is open: the item says how many times
-- it was seen, when last, and by which operation (whose correlation id finds
-- the latest occurrence in the log). A job that keeps giving up (a periodic
-- task failing every tick) folds into its one open job_failed item instead of
-- opening one per failure. These columns change as the problem recurs; what
-- the item is about (kind, subject, detail: the first occurrence) stays
-- immutable.
ALTER TABLE review_items ADD COLUMN seen_count integer NOT NULL DEFAULT 1 CONSTRAINT review_items_seen_count_positive CHECK (seen_count >= 1);
ALTER TABLE review_items ADD COLUMN last_seen_at timestamptz;
UPDATE review_items SET last_seen_at = created_at;
ALTER TABLE review_items ALTER COLUMN last_seen_at SET NOT NULL, ALTER COLUMN last_seen_at SET DEFAULT now();
-- NULL until the problem is seen again (the first time is op_id).
ALTER TABLE review_items ADD COLUMN last_seen_op uuid;
ALTER TABLE review_items ADD CONSTRAINT review_items_last_seen_op_fk FOREIGN KEY (tenant_id, last_seen_op) REFERENCES operations (tenant_id, id);
