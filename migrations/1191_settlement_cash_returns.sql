-- Up Migration
-- The cash a store's drawer gave back for partial returns of sales (journal
-- entries of kind sale_return, migration 1190) is a figure of its own in the
-- day's settlement, `cash_returns`, beside `cash_voids`:
--   expected_cash = float + cash_sales − cash_voids − cash_returns + payments_in − payments_out + other_cash.
-- Before this there were no returns, so every settlement recorded so far has
-- 0 (the default) and its other figures keep their meaning: other_cash is
-- still everything else posted to the drawer, now leaving out sale_return as
-- it leaves out sale and sale_void.
ALTER TABLE settlements ADD COLUMN cash_returns bigint NOT NULL DEFAULT 0;

-- The formula the table holds every settlement to (0302's unnamed CHECK,
-- found by its definition) gains the new figure. Added NOT VALID and then
-- validated: validating takes a lock that lets counts go on meanwhile.
DO $$
DECLARE
  formula text;
BEGIN
  SELECT conname INTO STRICT formula FROM pg_constraint
  WHERE conrelid = 'settlements'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%expected_cash = %';
  EXECUTE format('ALTER TABLE settlements DROP CONSTRAINT %I', formula);
END
$$;
ALTER TABLE settlements ADD CONSTRAINT settlements_expected_cash_formula
  CHECK (expected_cash = float_amount + cash_sales - cash_voids - cash_returns + payments_in - payments_out + other_cash) NOT VALID;
ALTER TABLE settlements VALIDATE CONSTRAINT settlements_expected_cash_formula;

-- Recorded once, like the other figures.
DROP TRIGGER settlements_immutable ON settlements;
CREATE TRIGGER settlements_immutable BEFORE UPDATE ON settlements
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'store_id', 'business_date', 'float_amount', 'cash_sales', 'cash_voids',
    'cash_returns', 'payments_in', 'payments_out', 'other_cash', 'expected_cash', 'declared_cash', 'variance', 'note', 'submitted_by', 'op_id', 'created_at');

-- Its result gains a column: dropped and created again (one definition, used
-- by submitSettlement and the check settlement_matches_ledger, as in 0805).
DROP FUNCTION drawer_movements(uuid, uuid, date);
CREATE FUNCTION drawer_movements(p_tenant uuid, p_store uuid, p_day date)
RETURNS TABLE (cash_sales bigint, cash_voids bigint, cash_returns bigint, payments_in bigint, payments_out bigint, other_cash bigint)
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(p.amount) FILTER (WHERE e.kind = 'sale'), 0)::bigint,
         coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'sale_void'), 0)::bigint,
         coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'sale_return'), 0)::bigint,
         coalesce(sum(p.amount) FILTER (WHERE e.kind = 'payment' AND p.amount > 0), 0)::bigint,
         coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'payment' AND p.amount < 0), 0)::bigint,
         coalesce(sum(p.amount) FILTER (WHERE e.kind NOT IN ('sale', 'sale_void', 'sale_return', 'payment')), 0)::bigint
  FROM journal_entries e
  JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
  JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
  WHERE e.tenant_id = p_tenant AND e.store_id = p_store AND e.business_date = p_day
    AND a.key = 'store/' || p_store || '/cash_drawer'
$$;
