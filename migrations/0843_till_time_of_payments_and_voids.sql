-- Up Migration
-- The till's time of a payment and of a void (`client_created_at` on
-- POST /v1/payments and POST /v1/sales/{id}/void), as a sale keeps its own.
--
-- A till that queued a payment (a supplier paid from the drawer, a customer
-- paying their tab) or a void (cash handed back) offline sends it when it is
-- online again, often the next morning: its journal entry was dated the day
-- it arrived, so its cash was in the next day's count — yesterday's count
-- showed a surplus or a shortage that was not there, and today's the
-- opposite. The entry is now dated on the till's day by the sale's rule
-- (open_business_date: never before the store's latest count, never in the
-- future); the time the till sent is kept here as sent, beside created_at /
-- voided_at (when it reached us). NULL: none was sent (booked on arrival).
-- Both columns are nullable without a default: adding them rewrites nothing.
ALTER TABLE payments ADD COLUMN client_created_at timestamptz;

ALTER TABLE sales ADD COLUMN void_client_created_at timestamptz;

-- A voided sale cannot change, its void's till time included; only a void
-- sets it. (A guard, not a CHECK: validating a CHECK would scan every sale
-- under the table's exclusive lock, stopping the tills meanwhile.)
CREATE OR REPLACE FUNCTION sales_status_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'voided' AND (NEW.status IS DISTINCT FROM OLD.status OR NEW.voided_by_op IS DISTINCT FROM OLD.voided_by_op
                                OR NEW.voided_at IS DISTINCT FROM OLD.voided_at OR NEW.void_reason IS DISTINCT FROM OLD.void_reason
                                OR NEW.void_client_created_at IS DISTINCT FROM OLD.void_client_created_at) THEN
    RAISE EXCEPTION 'a voided sale cannot change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.status = 'completed' AND NEW.void_client_created_at IS NOT NULL THEN
    RAISE EXCEPTION 'only a void records a till time of a void' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
