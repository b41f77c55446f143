-- Up Migration
-- tenants_with_stock() (migration 0101) is SECURITY DEFINER too and was missed
-- by 0801: only the app role may call it. The test in
-- src/tenancy/isolation.int.spec.ts now checks every SECURITY DEFINER function
-- of the schema, read from pg_proc, so the next one cannot be missed.
REVOKE EXECUTE ON FUNCTION tenants_with_stock() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_stock() TO storekeep_app;
