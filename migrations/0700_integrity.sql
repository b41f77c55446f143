-- Up Migration
-- Open integrity findings per check, across tenants, for the API's /metrics
-- (the app role sees one tenant at a time; this returns only counts).
CREATE FUNCTION open_integrity_findings() RETURNS TABLE (check_name text, findings bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT subject_type, count(*) FROM review_items
  WHERE kind = 'integrity_finding' AND status = 'open' AND subject_type IS NOT NULL
  GROUP BY subject_type
$$;
REVOKE EXECUTE ON FUNCTION open_integrity_findings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION open_integrity_findings() TO storekeep_app;
CREATE INDEX review_items_open_kind_idx ON review_items (kind, subject_type) WHERE status = 'open';
