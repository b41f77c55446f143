-- Up Migration
-- Row-level security: the tenant of the session is read once per statement,
-- not once per row.
--
-- Every tenant table's policy compared tenant_id with current_tenant_id(),
-- an inlined call of current_setting('app.tenant_id') plus a uuid parse,
-- evaluated for each row a statement reads or writes (a group-commit batch
-- inserts hundreds of rows per statement; perf showed the GUC lookup and
-- its string copy among the hottest functions of a sale). As a scalar
-- subquery, (SELECT current_tenant_id()) becomes an initplan: evaluated once
-- per statement, its value compared with each row. The rule itself is
-- unchanged: a row is visible and writable only for the session's tenant,
-- and no tenant set (NULL) matches nothing.
CREATE OR REPLACE FUNCTION enable_tenant_rls(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
  EXECUTE format(
    'CREATE POLICY tenant_isolation ON %s USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()))',
    target);
END
$$;

DO $$
DECLARE
  target regclass;
BEGIN
  FOR target IN
    SELECT p.polrelid::regclass FROM pg_policy p
    WHERE p.polname = 'tenant_isolation' AND p.polrelid <> 'tenants'::regclass
    ORDER BY p.polrelid::regclass::text
  LOOP
    EXECUTE format(
      'ALTER POLICY tenant_isolation ON %s USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()))',
      target);
  END LOOP;
END
$$;

ALTER POLICY tenant_isolation ON tenants USING (id = (SELECT current_tenant_id())) WITH CHECK (id = (SELECT current_tenant_id()));
