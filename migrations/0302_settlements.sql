-- Up Migration
-- Daily cash settlement per store and business date: what the drawer should
-- hold (float + the day's cash movements, from the ledger), what was counted,
-- the variance, and a manager's decision with optimistic concurrency (version).
--   submitted ──approve──► approved
--       └──────reject────► rejected
CREATE TABLE settlements (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  business_date date NOT NULL,
  status text NOT NULL DEFAULT 'submitted' CHECK (status IN ('submitted', 'approved', 'rejected')),
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  -- Minor units. The day's movements of the store's cash drawer account, by what moved them.
  float_amount bigint NOT NULL CHECK (float_amount >= 0),
  cash_sales bigint NOT NULL,
  cash_voids bigint NOT NULL,
  payments_in bigint NOT NULL,
  payments_out bigint NOT NULL,
  other_cash bigint NOT NULL,
  expected_cash bigint NOT NULL,
  declared_cash bigint NOT NULL CHECK (declared_cash >= 0),
  variance bigint NOT NULL,
  note text CHECK (length(note) <= 1000),
  submitted_by text NOT NULL,
  decided_by text,
  decided_op uuid,
  decided_at timestamptz,
  decision_note text CHECK (length(decision_note) <= 1000),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, decided_op) REFERENCES operations (tenant_id, id),
  CHECK (expected_cash = float_amount + cash_sales - cash_voids + payments_in - payments_out + other_cash),
  CHECK (variance = declared_cash - expected_cash),
  CHECK ((decided_op IS NOT NULL) = (status <> 'submitted')),
  CHECK ((decided_by IS NOT NULL) = (status <> 'submitted'))
);
SELECT enable_tenant_rls('settlements');
-- A store-day has at most one approved settlement …
CREATE UNIQUE INDEX settlements_one_approved_per_store_day ON settlements (tenant_id, store_id, business_date) WHERE status = 'approved';
-- … and at most one that is submitted or approved (a rejected one may be submitted again).
CREATE UNIQUE INDEX settlements_one_open_per_store_day ON settlements (tenant_id, store_id, business_date) WHERE status IN ('submitted', 'approved');
CREATE INDEX settlements_store_idx ON settlements (tenant_id, store_id, business_date DESC, id);
CREATE TRIGGER settlements_immutable BEFORE UPDATE ON settlements
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'store_id', 'business_date', 'float_amount', 'cash_sales', 'cash_voids',
    'payments_in', 'payments_out', 'other_cash', 'expected_cash', 'declared_cash', 'variance', 'note', 'submitted_by', 'op_id', 'created_at');
REVOKE DELETE ON settlements FROM storekeep_app;
