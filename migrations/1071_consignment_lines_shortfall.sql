-- Up Migration
-- Goods left on a visit queued offline, synced when the supplying store is
-- now short. The goods physically left the store already (the agent left
-- them at the point of sale): the completion used to be refused whole (409
-- insufficient_stock), and the phone's queue item with it, so the store's
-- stock showed goods that were no longer on its shelves. Like an offline sale
-- (sale_items.shortfall_quantity), such a completion now takes what is there
-- down to 0 through the stock ledger (kind consignment_out) and records the
-- missing part here; an offline_consignment_shortage review item is opened.
-- The line's quantity stays what was left at the point of sale (a later
-- settlement accounts for all of it and returns what comes back in full);
-- the ledger took quantity − shortfall_quantity. Online completions are
-- still refused when short: always 0 for them.
ALTER TABLE consignment_lines ADD COLUMN shortfall_quantity bigint NOT NULL DEFAULT 0;

-- NOT VALID: every existing row has 0; validating would scan the table under
-- its exclusive lock. New rows are checked all the same.
ALTER TABLE consignment_lines ADD CONSTRAINT consignment_lines_shortfall_within_quantity
  CHECK (shortfall_quantity >= 0 AND shortfall_quantity <= quantity) NOT VALID;

-- The answers of completions stored before this one lack the lines' new
-- field (the answer's schema requires it): it was 0 for every one of them.
-- Only answers whose consignment lines lack it change (as 0862 did).
UPDATE idempotency_keys k
SET response_body = jsonb_set(
      k.response_body, '{consignment,lines}',
      (SELECT jsonb_agg(CASE WHEN jsonb_typeof(line) = 'object' AND NOT line ? 'shortfall_quantity' THEN line || '{"shortfall_quantity": 0}'::jsonb ELSE line END ORDER BY position)
       FROM jsonb_array_elements(k.response_body -> 'consignment' -> 'lines') WITH ORDINALITY AS l(line, position)))
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'visit.complete'
  AND jsonb_typeof(k.response_body -> 'consignment' -> 'lines') = 'array'
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(k.response_body -> 'consignment' -> 'lines') AS l(line)
              WHERE jsonb_typeof(line) = 'object' AND NOT line ? 'shortfall_quantity');
