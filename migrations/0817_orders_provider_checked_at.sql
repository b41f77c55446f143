-- Up Migration
-- An order the provider holds (submitted / processing) moves on by the
-- provider's webhooks. A provider stops delivering a webhook after a few
-- tries, so an order whose webhooks were lost waited forever. Now the sweep
-- asks the provider about one that has not moved for ORDERS_POLL_AFTER_SECONDS
-- (order.poll); provider_checked_at is when it last asked (not part of the
-- order's version: nothing a client sees changes).
ALTER TABLE orders ADD COLUMN provider_checked_at timestamptz;
-- The sweep reads only the orders waiting on the provider, by when they last
-- moved or were asked about (greatest() skips the NULL of one never asked).
CREATE INDEX orders_awaiting_provider_idx ON orders (greatest(status_changed_at, provider_checked_at))
  WHERE status IN ('submitted', 'processing');
