-- Up Migration
-- A SKU's version (API.md: records with a version return it as an ETag; a
-- PATCH with an If-Match that no longer matches is 412 version_conflict).
-- Two managers changing one SKU's price from what each saw: the second is
-- told the SKU moved on instead of overwriting the first unseen. Every SKU is
-- at version 1 now; each change that changes something adds 1
-- (src/inventory/createSku.ts updateSku). Adding the column with a constant
-- default rewrites nothing.
ALTER TABLE skus ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);

-- The answers stored for replay before this one lack the SKU's new field
-- (the answer's schema requires it): a SKU created or changed then is at
-- version 1 now, as its answer says. Only answers that lack it change.
UPDATE idempotency_keys k
SET response_body = k.response_body || '{"version": 1}'::jsonb
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type IN ('sku.create', 'sku.update')
  AND jsonb_typeof(k.response_body) = 'object' AND k.response_body ? 'unit'
  AND NOT k.response_body ? 'version';
