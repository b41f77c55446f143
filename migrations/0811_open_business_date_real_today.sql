-- Up Migration
-- open_business_date compared with the transaction's start ("today" =
-- now()): a transaction that began before midnight and books money just
-- after the next day was settled (a count submitted right after midnight)
-- could date it into that settled day, because a day after "today" was taken
-- as not settled without looking. The rule now lives in
-- open_business_date_on(…, p_today), and "today" is the date at the moment
-- the entry is booked (clock_timestamp()), so every day it may return has
-- been checked under its store-day lock.
CREATE FUNCTION open_business_date_on(p_tenant uuid, p_store uuid, p_wanted date, p_today date) RETURNS date
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  day date := LEAST(coalesce(p_wanted, p_today), p_today);
BEGIN
  IF p_store IS NULL THEN
    RETURN day;
  END IF;
  LOOP
    PERFORM pg_advisory_xact_lock_shared(settlement_day_lock_key(p_tenant, p_store, day));
    -- A day after today cannot have been counted yet (settlements are never for a future day).
    IF day > p_today OR NOT EXISTS (
      SELECT 1 FROM settlements s
      WHERE s.tenant_id = p_tenant AND s.store_id = p_store AND s.business_date = day
        AND s.status IN ('submitted', 'approved', 'rejected')
    ) THEN
      RETURN day;
    END IF;
    day := day + 1;
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION open_business_date(p_tenant uuid, p_store uuid, p_wanted date) RETURNS date
LANGUAGE sql VOLATILE AS $$
  SELECT open_business_date_on(p_tenant, p_store, p_wanted, (clock_timestamp() AT TIME ZONE 'UTC')::date)
$$;
