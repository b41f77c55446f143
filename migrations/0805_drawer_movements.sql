-- Up Migration
-- The day's movements of a store's cash drawer by kind of entry — the figures
-- a settlement records. One definition, used by submitSettlement (through
-- src/settlements/queries.ts) and by the integrity check settlement_matches_ledger,
-- which compares every component, not only their sum.
CREATE FUNCTION drawer_movements(p_tenant uuid, p_store uuid, p_day date)
RETURNS TABLE (cash_sales bigint, cash_voids bigint, payments_in bigint, payments_out bigint, other_cash bigint)
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(p.amount) FILTER (WHERE e.kind = 'sale'), 0)::bigint,
         coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'sale_void'), 0)::bigint,
         coalesce(sum(p.amount) FILTER (WHERE e.kind = 'payment' AND p.amount > 0), 0)::bigint,
         coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'payment' AND p.amount < 0), 0)::bigint,
         coalesce(sum(p.amount) FILTER (WHERE e.kind NOT IN ('sale', 'sale_void', 'payment')), 0)::bigint
  FROM journal_entries e
  JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
  JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
  WHERE e.tenant_id = p_tenant AND e.store_id = p_store AND e.business_date = p_day
    AND a.key = 'store/' || p_store || '/cash_drawer'
$$;
