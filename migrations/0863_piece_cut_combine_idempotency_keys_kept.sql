-- Up Migration
-- A cut's and a combine's idempotency record is kept as long as what they
-- made, like a reservation's (0860). A late repeat of either, after its key
-- expired and was purged, found its input pieces consumed and was refused
-- 409 piece_unavailable — which a device reads as "not recorded" — or, when
-- the cut had been reverted meanwhile (its input back in stock), cut the
-- piece again. New records are written with expires_at = 'infinity'
-- (CommandSpec ttlHours 'forever'); this keeps the ones still stored.
UPDATE idempotency_keys k
SET expires_at = 'infinity'
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type IN ('piece.cut', 'piece.combine');
