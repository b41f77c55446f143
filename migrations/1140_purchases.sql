-- Up Migration
-- Purchases: goods received from a supplier put what we owe on the
-- supplier's balance. A receipt of goods (POST /v1/stores/{id}/stock/receipts)
-- that names `supplier_id` and a `unit_cost` on every line is a purchase: in
-- the receipt's one transaction it writes
--
--   * one `purchases` row (the supplier, the store, the total) and one
--     `purchase_lines` row per request line (quantity, unit cost, line total,
--     rounded by the sale's rule: src/sales/lineTotal.ts);
--   * when the total is above 0, one journal entry of kind `purchase`
--     (subject the purchase) debiting the store's new `inventory` account
--     (the goods' cost) and crediting the supplier's `payable` account.
--
-- A receipt without those fields writes none of this, as before. The
-- integrity check money_purchase_posted (src/money/integrity.ts) holds the
-- rows, the entry and the receipt's stock ledger rows to each other.

-- The store account that holds the cost of goods received: the check on
-- accounts.kind gains `inventory` (a store account, like the five before).
-- The accounts table is small (one row per party, a few per store): the new
-- check is validated as it is added.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
  CHECK (kind IN ('receivable', 'payable', 'cash_drawer', 'bank', 'card_clearing', 'mobile_clearing', 'sales_revenue', 'inventory'));

CREATE TABLE purchases (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  -- A party of kind supplier (the command checks the kind; so does the
  -- integrity check).
  supplier_id uuid NOT NULL,
  -- Sum of the lines' totals, minor units.
  total bigint NOT NULL CHECK (total BETWEEN 0 AND 9000000000000),
  -- The `purchase` journal entry, written by the same operation; null when
  -- the total is 0 (an entry needs money to move, as a sale of total 0 has none).
  entry_id uuid,
  reference text CHECK (length(reference) <= 200),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  -- One purchase per receipt (its operation).
  UNIQUE (tenant_id, op_id),
  -- What its lines name: a line's operation is its purchase's.
  UNIQUE (tenant_id, op_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, supplier_id) REFERENCES parties (tenant_id, id),
  -- The entry of this very operation (journal_entries_tenant_id_op_id_id_key, 0821).
  FOREIGN KEY (tenant_id, entry_id, op_id) REFERENCES journal_entries (tenant_id, id, op_id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  CHECK ((entry_id IS NULL) = (total = 0))
);
SELECT enable_tenant_rls('purchases');
CREATE INDEX purchases_supplier_idx ON purchases (tenant_id, supplier_id, created_at);
CREATE TRIGGER purchases_append_only BEFORE UPDATE OR DELETE ON purchases
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE purchase_lines (
  tenant_id uuid NOT NULL,
  purchase_id uuid NOT NULL,
  -- The line's place in the request, from 1 (`/body/items/<line_number - 1>`).
  line_number integer NOT NULL CHECK (line_number >= 1),
  sku_id uuid NOT NULL,
  -- Base units of the SKU (grams, pieces, millimetres).
  quantity bigint NOT NULL CHECK (quantity > 0),
  -- Minor units per kg / piece / metre, as a sale line's unit_price.
  unit_cost bigint NOT NULL CHECK (unit_cost >= 0),
  line_total bigint NOT NULL CHECK (line_total BETWEEN 0 AND 9000000000000),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, purchase_id, line_number),
  FOREIGN KEY (tenant_id, op_id, purchase_id) REFERENCES purchases (tenant_id, op_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id)
);
SELECT enable_tenant_rls('purchase_lines');
CREATE TRIGGER purchase_lines_append_only BEFORE UPDATE OR DELETE ON purchase_lines
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

-- History is insert-only for the app role (the triggers hold for every role).
REVOKE UPDATE, DELETE ON purchases, purchase_lines FROM storekeep_app;
