-- Up Migration
-- Money never lands in a store-day that is already settled.
--
-- A journal entry of a store is dated by open_business_date: the wanted day
-- (an offline sale's till date; otherwise today, never later than today), or
-- — when that day already has a submitted or approved settlement — the next
-- day that has none (at the latest tomorrow: a day cannot be settled before
-- it starts). Without this, cash of a sale synced late, or rung up after the
-- count, would be booked into a closed day and no settlement would ever
-- expect it.
--
-- Race with a settlement being submitted: the entry takes a SHARED advisory
-- lock on (tenant, store, day) before looking; submitSettlement takes the
-- EXCLUSIVE lock on the same key before reading the day's movements. So a
-- submission waits for the entries of that day already being written, and an
-- entry that arrives after a submission sees it and moves to the next day.
CREATE FUNCTION settlement_day_lock_key(p_tenant uuid, p_store uuid, p_day date) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT hashtextextended('settlement-day/' || p_tenant::text || '/' || p_store::text || '/' || to_char(p_day, 'YYYY-MM-DD'), 0)
$$;

CREATE FUNCTION open_business_date(p_tenant uuid, p_store uuid, p_wanted date) RETURNS date
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
      WHERE s.tenant_id = p_tenant AND s.store_id = p_store AND s.business_date = day AND s.status IN ('submitted', 'approved')
    ) THEN
      RETURN day;
    END IF;
    day := day + 1;
  END LOOP;
END
$$;
