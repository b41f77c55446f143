-- Up Migration
-- A store's business day is the day in its own time zone, not the UTC day.
--
-- stores.time_zone: an IANA zone name as PostgreSQL knows it (a row of
-- pg_timezone_names, e.g. 'America/New_York'); 'UTC' for every store that
-- had none, so nothing changes for them (a constant default: no rewrite).
-- Checked on every write by a trigger against PostgreSQL's own zone list —
-- the same list AT TIME ZONE reads — so a store can never name a zone the
-- day rule could not apply (the API checks it first, for a 400 at its field).
ALTER TABLE stores ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';

CREATE FUNCTION is_known_time_zone(p_time_zone text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_time_zone)
$$;

CREATE FUNCTION store_time_zone_known() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT is_known_time_zone(NEW.time_zone) THEN
    RAISE EXCEPTION 'unknown time zone %', NEW.time_zone USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER stores_time_zone_known BEFORE INSERT OR UPDATE OF time_zone ON stores
  FOR EACH ROW EXECUTE FUNCTION store_time_zone_known();

-- THE rule: the business day of a moment for a store in p_time_zone — the
-- calendar date on the store's wall clock at that moment. Every place that
-- turns a moment into a store's day calls this (journal entries' days,
-- "today", settlements' day check, the daily sales rollup, its catch-up and
-- its integrity checks). A day when the clocks change has 23 or 25 hours.
-- (An SQL function, inlined by the planner where it is used.)
CREATE FUNCTION store_day(p_time_zone text, p_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (p_at AT TIME ZONE p_time_zone)::date
$$;

-- open_business_date for a store whose zone the caller already read (a
-- batch of journal entries reads it with the entries, one statement):
-- "today" is the store's day at the moment the entry is booked.
CREATE FUNCTION open_business_date(p_tenant uuid, p_store uuid, p_wanted date, p_time_zone text) RETURNS date
LANGUAGE sql VOLATILE AS $$
  SELECT open_business_date_on(p_tenant, p_store, p_wanted, store_day(coalesce(p_time_zone, 'UTC'), clock_timestamp()))
$$;

-- The three-argument form reads the store's zone itself (UTC without a store).
CREATE OR REPLACE FUNCTION open_business_date(p_tenant uuid, p_store uuid, p_wanted date) RETURNS date
LANGUAGE sql VOLATILE AS $$
  SELECT open_business_date(p_tenant, p_store, p_wanted,
                            (SELECT st.time_zone FROM stores st WHERE st.tenant_id = p_tenant AND st.id = p_store))
$$;

-- Answers of store creation stored for replay carry the store as it was
-- answered; the answer now has time_zone (required by its schema), and every
-- store created before this had UTC (as 0850/0862 did for other fields).
UPDATE idempotency_keys k
SET response_body = k.response_body || '{"time_zone": "UTC"}'::jsonb
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'store.create'
  AND jsonb_typeof(k.response_body) = 'object' AND NOT k.response_body ? 'time_zone';
