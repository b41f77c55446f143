-- Up Migration
-- A store-day stays closed to new money once it has been counted, also when
-- that count is rejected. Before, a rejection reopened the day: money booked
-- between the count and the rejection had gone to the next day, money after
-- the rejection came back to this one, and the recount expected neither all
-- of the drawer nor the first count's figures (one evening's cash split over
-- two days). Now, like a till's end-of-day report, the first count closes the
-- day: a recount after a rejection is checked against the same figures, and
-- everything after the first count belongs to the next day.
CREATE OR REPLACE FUNCTION open_business_date(p_tenant uuid, p_store uuid, p_wanted date) RETURNS date
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  day date := LEAST(coalesce(p_wanted, today), today);
BEGIN
  IF p_store IS NULL THEN
    RETURN day;
  END IF;
  LOOP
    PERFORM pg_advisory_xact_lock_shared(settlement_day_lock_key(p_tenant, p_store, day));
    IF day > today OR NOT EXISTS (
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
