-- Up Migration
-- Money never lands on a day before the store's latest count.
--
-- An offline sale is booked on its till's day (0802), moved on past days
-- already counted (0810, 0815). A day before the store's latest count that
-- was never counted was skipped by the shop, and money booked there is in no
-- count ever: a till whose clock was reset (1970-01-01) booked its cash
-- there, and the drawer's next count showed it as an unexplained surplus.
-- Now the wanted day is at the earliest the store's latest counted day, which
-- the loop then moves past, to the first day after it with no count — the
-- count that will find that cash in the drawer. A store never counted books
-- on the till's day, as before. (The latest count is read without a lock: a
-- count of a later day submitted meanwhile leaves the entry where it would
-- have been before this change, never in a counted day — the loop's locks
-- see to that.)
CREATE OR REPLACE FUNCTION open_business_date_on(p_tenant uuid, p_store uuid, p_wanted date, p_today date) RETURNS date
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  day date := LEAST(coalesce(p_wanted, p_today), p_today);
  latest date;
BEGIN
  IF p_store IS NULL THEN
    RETURN day;
  END IF;
  SELECT max(s.business_date) INTO latest FROM settlements s
  WHERE s.tenant_id = p_tenant AND s.store_id = p_store AND s.status IN ('submitted', 'approved', 'rejected');
  IF latest IS NOT NULL AND day < latest THEN
    day := latest;
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
