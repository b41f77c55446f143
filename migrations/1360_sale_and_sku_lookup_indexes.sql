-- Up Migration
-- Finding sales and SKUs the way shop staff look for them.
--
-- GET /v1/stores/{store_id}/sales?status=voided (a manager looking for the
-- day's voids, ~1 % of sales): a page is a range of the store's voided sales
-- by created_at, not a walk of every sale filtered. Partial: a completed sale
-- never enters it; a void (an UPDATE that already rewrites the voided_xid
-- index entry, so never a HOT update) adds one entry. ?status=completed walks
-- the store's index (sales_store_created_idx) past the few voided ones.
CREATE INDEX sales_store_voided_idx ON sales (tenant_id, store_id, created_at)
  WHERE status = 'voided';

-- ?customer_id= (a customer's purchases at this store): the customer's sales
-- of a store by created_at. It replaces sales_customer_idx (tenant_id,
-- customer_id) of migration 0303, which is its prefix and serves what that
-- served (a customer's sales across stores; the parties foreign key): a sale
-- with a customer still writes one entry, a sale without one none.
CREATE INDEX sales_customer_store_created_idx ON sales (tenant_id, customer_id, store_id, created_at)
  WHERE customer_id IS NOT NULL;
DROP INDEX sales_customer_idx;

-- GET /v1/skus?q= (SKUs whose code or name contains a text, any letter
-- case): the text's trigrams (pg_trgm) within the tenant's entries
-- (btree_gin's uuid key), so a search reads the tenant's SKUs that hold the
-- text — not the tenant's every SKU, nor other tenants' SKUs that hold it.
-- Both extensions ship with PostgreSQL and are trusted: the role that owns
-- the database (the migration role: the embedded server's superuser, or a
-- DATABASE_URL owner) creates them. ?code= is the unique (tenant_id, code).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;
-- One index a column (a code that holds the text, or a name that does: a
-- BitmapOr of the two): one index of both columns was costed at the
-- trigrams of both for either condition, and lost to reading every SKU of
-- the tenant by the (tenant_id, code) index. fastupdate off: a SKU written
-- goes into the index at once, not into GIN's pending list — which every
-- search reads whole until a vacuum empties it, and which the planner prices
-- so (3,000 SKUs just imported were searched by reading all of them). SKUs
-- are written by the back office, not on the sale hot path.
CREATE INDEX skus_code_search_idx ON skus USING gin (tenant_id, code gin_trgm_ops) WITH (fastupdate = off);
CREATE INDEX skus_name_search_idx ON skus USING gin (tenant_id, name gin_trgm_ops) WITH (fastupdate = off);

-- The app role reads skus under row-level security, and PostgreSQL uses no
-- condition that is not leakproof — ILIKE is not — as an index condition
-- before the policy's: as the app role, a search read every SKU of the
-- table and filtered. This owner-run function is the search: the SKUs of the
-- transaction's tenant (app.tenant_id, as the policy reads it; none when it
-- is not set) whose code or name matches `pattern` (an ILIKE pattern), after
-- the code `after_code` (NULL: from the first). No ORDER BY and LIMIT here
-- (the caller's): with them the planner walked the tenant's codes from the
-- cursor until a page was full — every SKU of the tenant for a text few
-- hold. EXECUTE … USING plans the search with its values every call: a plan
-- made without them (a SQL function's generic plan) cannot weigh the
-- text's trigrams and took the tenant's every SKU from the (tenant_id, code)
-- index; with them, a text few SKUs hold is read through skus_code_search_idx and skus_name_search_idx.
CREATE FUNCTION skus_matching(pattern text, after_code text) RETURNS SETOF skus
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  RETURN QUERY EXECUTE
    'SELECT s.* FROM public.skus s
     WHERE s.tenant_id = $1 AND (s.code ILIKE $2 OR s.name ILIKE $2) AND ($3::text IS NULL OR s.code > $3::text)'
    USING public.current_tenant_id(), pattern, after_code;
END
$$;
REVOKE EXECUTE ON FUNCTION skus_matching(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION skus_matching(text, text) TO storekeep_app;
