-- Up Migration
-- The idempotency record of a command that records a new fact with nothing
-- else in the request to recognise it by — a payment, a receipt of goods, a
-- stock correction, goods received as workshop pieces, an order to the
-- fulfilment provider, a transfer request — is kept as long as what it
-- recorded, like a sale's (0833). Those records expired after
-- IDEMPOTENCY_TTL_HOURS (24 by default) and were purged, so a client that
-- never got the answer and sent the request again from its offline queue
-- after a weekend paid twice, received the goods twice, shipped the order
-- twice. New records are written with expires_at = 'infinity' (CommandSpec
-- ttlHours 'forever'); this keeps the ones still stored.
UPDATE idempotency_keys k
SET expires_at = 'infinity'
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id
  AND o.type IN ('payment.create', 'stock.receive', 'stock.adjust', 'piece.receive', 'order.create', 'transfer.request');
