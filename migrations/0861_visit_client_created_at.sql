-- Up Migration
-- The device time of a visit's completion (`client_created_at` on
-- POST /v1/visits/{id}/complete), as a sale, a payment and a void keep the
-- till's (0843).
--
-- Field agents work offline: a completion queued on the phone reaches us
-- when it is back online, sometimes days later. The point of sale's last
-- visit took the arrival time (completed_at), so a visit made three days ago
-- and synced now replaced a newer one. The point of sale's last visit is now
-- the latest visit by when it happened: this time, no later than its arrival
-- and no earlier than the visit's scheduling; without it, its arrival (as
-- before). Kept here as sent, beside completed_at (when it reached us);
-- NULL: none was sent. Nullable without a default: adding it rewrites nothing.
ALTER TABLE visits ADD COLUMN client_created_at timestamptz;

-- Only a completion records it. NOT VALID: no existing row has one, and
-- validating would scan the table under its exclusive lock; new and
-- updated rows are checked all the same.
ALTER TABLE visits ADD CONSTRAINT visits_client_time_on_completion
  CHECK (client_created_at IS NULL OR status = 'completed') NOT VALID;
