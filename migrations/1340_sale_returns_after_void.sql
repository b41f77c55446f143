-- Up Migration
-- A return a till made offline before the sale was voided, sent after the
-- void (POST /v1/sales/{id}/returns with `client_created_at` before the
-- void's moment: its void_client_created_at when a till queued the void, else
-- its voided_at). The till took the goods back and handed the refund out, so
-- it is a fact: refused (409 invalid_transition) as it used to be, the cash
-- out of the till's drawer was recorded nowhere. It is recorded here with its
-- lines like any return, marked `after_void`, and moves nothing: the void
-- already gave back every unit the sale still held and reversed all its
-- money, so it has no `return` ledger row, no `sale_return` journal entry,
-- and adds nothing to the sale's returned_total (which stays what the returns
-- before the void refunded). A `sale_return_after_void` review item asks
-- someone to check the till's cash (src/sales/returnSale.ts). The integrity
-- checks sale_return_matches_lines, sale_stock_matches_items and
-- sale_return_after_void_matches_review_item hold it. Adding the column with
-- a constant default rewrites nothing.
ALTER TABLE sale_returns ADD COLUMN after_void boolean NOT NULL DEFAULT false;
-- Only a return carrying the till's time can have been made before a void it
-- arrived after. NOT VALID: every existing row is false (nothing to validate,
-- and validating would scan the table under its lock); new rows are checked.
ALTER TABLE sale_returns ADD CONSTRAINT sale_returns_after_void_has_till_time
  CHECK (NOT after_void OR client_created_at IS NOT NULL) NOT VALID;

-- The answers stored for replay before this one lack the return's new field
-- (the answer's schema requires it): every return then was made before its
-- sale's void, or on a sale never voided — false. A return's own answer
-- carries it at the top; a void's answer (and any other sale answer) in each
-- of the sale's `returns`. Only answers that lack it change (as 1071 did).
UPDATE idempotency_keys k
SET response_body = k.response_body || '{"after_void": false}'::jsonb
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'sale.return'
  AND jsonb_typeof(k.response_body) = 'object' AND k.response_body ? 'return_number'
  AND NOT k.response_body ? 'after_void';

UPDATE idempotency_keys k
SET response_body = jsonb_set(
      k.response_body, '{returns}',
      (SELECT jsonb_agg(CASE WHEN jsonb_typeof(r) = 'object' AND NOT r ? 'after_void' THEN r || '{"after_void": false}'::jsonb ELSE r END ORDER BY position)
       FROM jsonb_array_elements(k.response_body -> 'returns') WITH ORDINALITY AS x(r, position)))
WHERE jsonb_typeof(k.response_body) = 'object' AND jsonb_typeof(k.response_body -> 'returns') = 'array'
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(k.response_body -> 'returns') AS x(r)
              WHERE jsonb_typeof(r) = 'object' AND NOT r ? 'after_void');
