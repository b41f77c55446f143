-- Up Migration
-- Answers stored for replay before 0861 lack the visit's `client_created_at`
-- that the answer now carries: a scheduled visit (its key kept for good since
-- 0842) and a visit completion (its visit, under `visit`; also the "already
-- completed" answers, which name the completion's operation). The answer's
-- schema requires it, so replaying such an answer failed to serialize: a 500
-- on every retry. No device time was sent before 0861: null. Only answers
-- that lack it change (as 0850 did for the till-time fields of 0843).
UPDATE idempotency_keys k
SET response_body = k.response_body || '{"client_created_at": null}'::jsonb
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'visit.schedule'
  AND jsonb_typeof(k.response_body) = 'object' AND k.response_body ? 'scheduled_for'
  AND NOT k.response_body ? 'client_created_at';

UPDATE idempotency_keys k
SET response_body = jsonb_set(k.response_body, '{visit}', (k.response_body -> 'visit') || '{"client_created_at": null}'::jsonb)
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'visit.complete'
  AND jsonb_typeof(k.response_body -> 'visit') = 'object'
  AND NOT (k.response_body -> 'visit') ? 'client_created_at';
