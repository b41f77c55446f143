-- Up Migration
-- A cash count's idempotency record is kept as long as the count, like a
-- sale's (0833) and a payment's (0840). It expired after
-- IDEMPOTENCY_TTL_HOURS: a till that lost the answer of a count the manager
-- then rejected sent it again from its queue days later and submitted it as
-- a new count, awaiting approval with the stale figure, and the real recount
-- was refused (409 already_exists). New records are written with
-- expires_at = 'infinity' (CommandSpec ttlHours 'forever'); this keeps the
-- ones still stored.
UPDATE idempotency_keys k
SET expires_at = 'infinity'
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'settlement.submit';
