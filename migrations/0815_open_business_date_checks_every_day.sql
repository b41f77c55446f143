-- Up Migration
-- open_business_date_on returned a day after p_today without looking at its
-- settlements ("a day after today cannot have been counted yet"). But p_today
-- is read when the entry starts to look (clock_timestamp(), migration 0811),
-- and the store-day lock may then be waited for: an entry that read the clock
-- just before midnight, found its day counted and waited for the next day's
-- lock while that day was being counted (a count submitted just after
-- midnight), got the lock once the count committed and booked its money into
-- the counted day, where no settlement expects it. Now every day is looked at
-- under its lock, whatever p_today says. The loop still ends: a settlement is
-- never for a day after the one its submission began on, so at the latest the
-- day after the real today has none. p_today now only caps the wanted day.
CREATE OR REPLACE FUNCTION open_business_date_on(p_tenant uuid, p_store uuid, p_wanted date, p_today date) RETURNS date
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  day date := LEAST(coalesce(p_wanted, p_today), p_today);
BEGIN
  IF p_store IS NULL THEN
    RETURN day;
  END IF;
  LOOP
    PERFORM pg_advisory_xact_lock_shared(settlement_day_lock_key(p_tenant, p_store, day));
    IF NOT EXISTS (
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
