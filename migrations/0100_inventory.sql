-- Up Migration
-- Inventory: stores, SKUs, stock balances (the lock) and the stock ledger (the history).
-- Invariant: for every (store, sku), stock_balances.quantity = SUM(stock_ledger.quantity_change).

CREATE TABLE stores (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  code text NOT NULL CHECK (length(code) BETWEEN 1 AND 50),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, code),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('stores');
CREATE TRIGGER stores_immutable BEFORE UPDATE ON stores
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'op_id', 'created_at');

CREATE TABLE skus (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  code text NOT NULL CHECK (length(code) BETWEEN 1 AND 100),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- Quantities are integers in the unit's base: grams (kg), pieces, millimetres (metre).
  unit text NOT NULL CHECK (unit IN ('kg', 'piece', 'metre')),
  -- Price per sale unit (per kg / piece / metre) in minor units.
  price bigint NOT NULL CHECK (price >= 0),
  -- Stock of a piece-tracked SKU is the sum of its live pieces (workshop).
  tracks_pieces boolean NOT NULL DEFAULT false,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, code),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('skus');
CREATE TRIGGER skus_immutable BEFORE UPDATE ON skus
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'unit', 'op_id', 'created_at');

-- The balance row is the lock: every change is a conditional/relative UPDATE
-- on it, never read-then-write. The CHECK is the last line of defence.
CREATE TABLE stock_balances (
  tenant_id uuid NOT NULL,
  store_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  quantity bigint NOT NULL DEFAULT 0 CONSTRAINT stock_balances_quantity_nonnegative CHECK (quantity >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, store_id, sku_id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id)
);
SELECT enable_tenant_rls('stock_balances');
REVOKE DELETE ON stock_balances FROM storekeep_app;

CREATE TABLE stock_ledger (
  tenant_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  store_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  op_id uuid NOT NULL,
  quantity_change bigint NOT NULL CHECK (quantity_change <> 0),
  quantity_after bigint NOT NULL CHECK (quantity_after >= 0),
  -- What moved the stock: receipt, adjustment, sale, void, transfer_out, transfer_in, consignment …
  kind text NOT NULL,
  reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id, sku_id) REFERENCES stock_balances (tenant_id, store_id, sku_id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('stock_ledger');
CREATE INDEX stock_ledger_balance_idx ON stock_ledger (tenant_id, store_id, sku_id, id);
CREATE INDEX stock_ledger_op_idx ON stock_ledger (tenant_id, op_id);
CREATE TRIGGER stock_ledger_append_only BEFORE UPDATE OR DELETE ON stock_ledger
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
