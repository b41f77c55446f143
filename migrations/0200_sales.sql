-- Up Migration
-- Sales: the sale, its lines, and the per-store receipt counter.
-- Invariants (checked by src/sales/integrity.ts):
--   receipt numbers of a store are exactly 1..n (gapless, never reused: a voided
--   sale keeps its number); every sale has at least one item.

-- One row per store: the last receipt number handed out. It is advanced by a
-- relative UPDATE in the sale's own transaction (savepoint), so a refused or
-- rolled-back sale gives its number back and numbers stay gapless.
CREATE TABLE store_receipt_counters (
  tenant_id uuid NOT NULL,
  store_id uuid NOT NULL,
  last_number bigint NOT NULL CHECK (last_number >= 0),
  PRIMARY KEY (tenant_id, store_id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id)
);
SELECT enable_tenant_rls('store_receipt_counters');
REVOKE DELETE ON store_receipt_counters FROM storekeep_app;

CREATE TABLE sales (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  receipt_number bigint NOT NULL CHECK (receipt_number >= 1),
  status text NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'voided')),
  payment_method text NOT NULL CHECK (payment_method IN ('cash', 'card', 'mobile', 'credit')),
  sale_type text NOT NULL DEFAULT 'regular' CHECK (sale_type IN ('regular', 'bulk')),
  -- 'online': POST /v1/sales (never oversells); 'offline': POST /v1/sync/sales
  -- (already happened at the till; may record a shortfall, see sale_items).
  source text NOT NULL DEFAULT 'online' CHECK (source IN ('online', 'offline')),
  -- A party of the money part; no FK here so the sales part does not depend on it.
  customer_id uuid,
  total bigint NOT NULL CHECK (total >= 0),
  client_created_at timestamptz,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  voided_by_op uuid,
  voided_at timestamptz,
  void_reason text,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, store_id, receipt_number),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, voided_by_op) REFERENCES operations (tenant_id, id),
  CHECK ((status = 'voided') = (voided_by_op IS NOT NULL AND voided_at IS NOT NULL AND void_reason IS NOT NULL))
);
SELECT enable_tenant_rls('sales');
CREATE INDEX sales_store_created_idx ON sales (tenant_id, store_id, created_at);
REVOKE DELETE ON sales FROM storekeep_app;
CREATE TRIGGER sales_immutable BEFORE UPDATE ON sales
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change(
    'tenant_id', 'id', 'store_id', 'receipt_number', 'payment_method', 'sale_type', 'source', 'customer_id',
    'total', 'client_created_at', 'op_id', 'created_at');

-- The only state change of a sale: completed → voided, once.
CREATE FUNCTION sales_status_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'voided' AND (NEW.status IS DISTINCT FROM OLD.status OR NEW.voided_by_op IS DISTINCT FROM OLD.voided_by_op
                                OR NEW.voided_at IS DISTINCT FROM OLD.voided_at OR NEW.void_reason IS DISTINCT FROM OLD.void_reason) THEN
    RAISE EXCEPTION 'a voided sale cannot change' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER sales_status_guard BEFORE UPDATE ON sales
  FOR EACH ROW EXECUTE FUNCTION sales_status_guard();

CREATE TABLE sale_items (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  sale_id uuid NOT NULL,
  line_number integer NOT NULL CHECK (line_number >= 1),
  sku_id uuid NOT NULL,
  -- Base units of the SKU (grams, pieces, millimetres).
  quantity bigint NOT NULL CHECK (quantity > 0),
  -- Minor units per kg / piece / metre.
  unit_price bigint NOT NULL CHECK (unit_price >= 0),
  line_total bigint NOT NULL CHECK (line_total >= 0),
  -- Offline sales only: the part of `quantity` that was not in stock when the
  -- sale was synced (stock went to 0, the rest is recorded here and in a review item).
  shortfall_quantity bigint NOT NULL DEFAULT 0 CHECK (shortfall_quantity >= 0 AND shortfall_quantity <= quantity),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, sale_id, line_number),
  FOREIGN KEY (tenant_id, sale_id) REFERENCES sales (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('sale_items');
CREATE TRIGGER sale_items_append_only BEFORE UPDATE OR DELETE ON sale_items
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

GRANT SELECT, INSERT, UPDATE ON store_receipt_counters, sales, sale_items TO storekeep_app;
