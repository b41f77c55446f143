-- Up Migration
-- The idempotency record of a supplier or customer, a point of sale and a
-- scheduled visit is kept as long as the record, like a sale's (0833) and a
-- payment's (0840): nothing else in those requests tells that they already
-- happened, so a late repeat after IDEMPOTENCY_TTL_HOURS created a second
-- point of sale with a second customer (its consignments owed to either), a
-- second visit, a second customer. New records are written with
-- expires_at = 'infinity' (CommandSpec ttlHours 'forever'); this keeps the
-- ones still stored.
UPDATE idempotency_keys k
SET expires_at = 'infinity'
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type IN ('party.create', 'point_of_sale.create', 'visit.schedule');
