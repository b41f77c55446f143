-- Up Migration
-- A piece reservation's idempotency record is kept as long as the
-- reservation, like a sale's (0833), a receipt of pieces' (0840) and a point
-- of sale's (0842): nothing else in the request ({ piece_ids,
-- expires_in_seconds }) tells that it already happened — the same pieces
-- may rightly be reserved again later, and a reservation that expired or was
-- released leaves its pieces in stock. Its record expired after
-- IDEMPOTENCY_TTL_HOURS and was purged, so a device that never got the
-- answer and sent the reservation again from its queue days later reserved
-- the pieces again (a new operation holding them from sale until that one
-- expired), or, while the first still held them, was refused 409
-- piece_unavailable "held by" its own reservation. New records are written
-- with expires_at = 'infinity' (CommandSpec ttlHours 'forever'); this keeps
-- the ones still stored.
UPDATE idempotency_keys k
SET expires_at = 'infinity'
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'piece.reserve';
