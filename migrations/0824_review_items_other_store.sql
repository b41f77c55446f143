-- Up Migration
-- A review item may concern a second store: a transfer received short is the
-- destination's item (store_id) and the source's too (other_store_id) — the
-- goods left the source and did not arrive, and the source's staff, limited
-- to their store, saw nothing of it. Visible to, and resolvable by, a token
-- of either store.
ALTER TABLE review_items ADD COLUMN other_store_id uuid;
ALTER TABLE review_items ADD CONSTRAINT review_items_other_store_fk FOREIGN KEY (tenant_id, other_store_id) REFERENCES stores (tenant_id, id);
ALTER TABLE review_items ADD CONSTRAINT review_items_other_store_differs CHECK (other_store_id IS NULL OR (store_id IS NOT NULL AND other_store_id <> store_id));
-- Shortfalls opened before this: their source is in the detail.
UPDATE review_items SET other_store_id = (detail ->> 'source_store_id')::uuid
WHERE kind = 'transfer_shortfall' AND other_store_id IS NULL AND detail ? 'source_store_id'
  AND (detail ->> 'source_store_id')::uuid IS DISTINCT FROM store_id;
