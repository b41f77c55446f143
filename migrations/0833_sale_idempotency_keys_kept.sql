-- Up Migration
-- A sale's idempotency record is kept as long as the sale. It expired with
-- every other key (IDEMPOTENCY_TTL_HOURS, 24 by default) and was purged, so a
-- till that never got a sale's answer and synced it from its offline queue a
-- weekend later sold it a second time. New records of sales are written
-- with expires_at = 'infinity' (CommandSpec ttlHours 'forever'); this keeps
-- the ones already stored, expired or not, since none was replaced.
UPDATE idempotency_keys k
SET expires_at = 'infinity'
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'sale.create';
