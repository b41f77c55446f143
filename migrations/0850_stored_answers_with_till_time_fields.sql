-- Up Migration
-- Answers stored for replay before 0843 lack the fields it added to them: a
-- sale's (and a void's) `void_client_created_at`, a payment's
-- `client_created_at` and `business_date`. The answer's schema requires them,
-- so replaying such an answer — a till syncing a sale it sent online before
-- the upgrade, whose key is kept for good since 0833 / 0840 — failed to
-- serialize: 500 on every retry, for ever. They are filled in as the answer
-- would have carried them: no till time was sent before 0843 (null), and a
-- payment's day is its journal entry's. Only answers that lack them change.
UPDATE idempotency_keys k
SET response_body = k.response_body || '{"void_client_created_at": null}'::jsonb
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type IN ('sale.create', 'sale.void')
  AND jsonb_typeof(k.response_body) = 'object' AND k.response_body ? 'receipt_number'
  AND NOT k.response_body ? 'void_client_created_at';

UPDATE idempotency_keys k
SET response_body = k.response_body
  || jsonb_build_object('client_created_at', k.response_body -> 'client_created_at')
  || jsonb_build_object('business_date', to_char(e.business_date, 'YYYY-MM-DD'))
FROM payments p
JOIN journal_entries e ON e.tenant_id = p.tenant_id AND e.id = p.entry_id
WHERE p.tenant_id = k.tenant_id AND p.op_id = k.op_id
  AND jsonb_typeof(k.response_body) = 'object' AND k.response_body ->> 'id' = p.id::text
  AND NOT (k.response_body ? 'client_created_at' AND k.response_body ? 'business_date');
