-- Up Migration
-- A store's version, as a SKU's (1400): its ETag on GET /v1/stores/{id},
-- POST and PATCH; PATCH takes an optional If-Match, and a store changed
-- since (renamed, moved to another zone) is 412 version_conflict instead of
-- being changed from what the caller no longer sees. Every store is at
-- version 1 now; each PATCH that changes something adds 1
-- (src/inventory/createStore.ts updateStore). Adding the column with a
-- constant default rewrites nothing.
ALTER TABLE stores ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);

-- The answers stored for replay before this one lack the store's new field
-- (the answer's schema requires it): a store created or changed then is at
-- version 1 now, as its answer says. Only answers that lack it change.
UPDATE idempotency_keys k
SET response_body = k.response_body || '{"version": 1}'::jsonb
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type IN ('store.create', 'store.update')
  AND jsonb_typeof(k.response_body) = 'object' AND k.response_body ? 'time_zone'
  AND NOT k.response_body ? 'version';
