-- Up Migration
-- Cancelling an order the provider holds (submitted / processing) now asks
-- the provider to cancel it too: the cancel command enqueues
-- `order.provider_cancel` in its own transaction. provider_cancellation says
-- where that stands, for the shop and for the sweep:
--   requested  the job is on its way (or waiting out a provider outage)
--   confirmed  the provider cancelled it (or had failed it: nothing ships)
--   refused    the provider would not (it had shipped): the order stays
--              cancelled and an order_cancel_refused review item is open
--   not_found  the provider holds no order under our key: nothing to cancel
-- NULL: nothing was asked (never cancelled, or cancelled while pending, before
-- it reached the provider). provider_cancellation_at: when it last changed,
-- or when the last round of tries gave up (the sweep's clock).
ALTER TABLE orders
  ADD COLUMN provider_cancellation text CHECK (provider_cancellation IN ('requested', 'confirmed', 'refused', 'not_found')),
  ADD COLUMN provider_cancellation_at timestamptz,
  ADD CONSTRAINT orders_provider_cancellation_only_cancelled CHECK (provider_cancellation IS NULL OR status = 'cancelled'),
  ADD CONSTRAINT orders_provider_cancellation_at_set CHECK ((provider_cancellation IS NULL) = (provider_cancellation_at IS NULL));
-- The sweep reads only the cancellations still waiting for the provider.
CREATE INDEX orders_provider_cancellation_requested_idx ON orders (provider_cancellation_at) WHERE provider_cancellation = 'requested';
