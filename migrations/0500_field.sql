-- Up Migration
-- Field sales: points of sale, visits by field agents, consignments (goods left
-- at a point of sale, taken out of the supplying store's stock) and their
-- settlement on the next visit (sold → money owed, returned → back to stock).
-- Money owed is posted to the double-entry ledger (0300): the point of sale is
-- a customer party, debited (receivable) against the store's sales revenue.

CREATE TABLE points_of_sale (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- The store whose stock the point of sale is supplied from.
  store_id uuid NOT NULL,
  -- The customer party whose receivable account carries what it owes.
  party_id uuid NOT NULL,
  -- Decimal degrees (WGS 84). Coordinates are not quantities or money: numeric
  -- keeps what the client sent exactly, the range checks are the last defence.
  latitude numeric(10, 7) NOT NULL CHECK (latitude BETWEEN -90 AND 90),
  longitude numeric(10, 7) NOT NULL CHECK (longitude BETWEEN -180 AND 180),
  last_visit_at timestamptz,
  last_visit_id uuid,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, party_id) REFERENCES parties (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('points_of_sale');
CREATE INDEX points_of_sale_store_idx ON points_of_sale (tenant_id, store_id, id);
CREATE TRIGGER points_of_sale_immutable BEFORE UPDATE ON points_of_sale
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'store_id', 'party_id', 'op_id', 'created_at');
REVOKE DELETE ON points_of_sale FROM storekeep_app;

CREATE TABLE visits (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  point_of_sale_id uuid NOT NULL,
  -- The field_agent token the visit is scheduled for.
  agent_token_id uuid NOT NULL,
  scheduled_for timestamptz NOT NULL,
  status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'completed')),
  completed_at timestamptz,
  completed_by_op uuid,
  completed_latitude numeric(10, 7) CHECK (completed_latitude BETWEEN -90 AND 90),
  completed_longitude numeric(10, 7) CHECK (completed_longitude BETWEEN -180 AND 180),
  -- Great-circle distance from the point of sale at completion, whole metres.
  completed_distance_m integer CHECK (completed_distance_m >= 0),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, point_of_sale_id) REFERENCES points_of_sale (tenant_id, id),
  FOREIGN KEY (tenant_id, agent_token_id) REFERENCES api_tokens (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, completed_by_op) REFERENCES operations (tenant_id, id),
  CHECK ((status = 'completed') = (completed_by_op IS NOT NULL AND completed_at IS NOT NULL))
);
SELECT enable_tenant_rls('visits');
CREATE INDEX visits_agent_idx ON visits (tenant_id, agent_token_id, scheduled_for, id);
CREATE INDEX visits_point_of_sale_idx ON visits (tenant_id, point_of_sale_id, scheduled_for);
CREATE TRIGGER visits_immutable BEFORE UPDATE ON visits
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'point_of_sale_id', 'agent_token_id', 'op_id', 'created_at');
REVOKE DELETE ON visits FROM storekeep_app;

-- Goods left at a point of sale on a visit. The stock left the supplying store
-- through the stock ledger (kind consignment_out) in the same operation.
CREATE TABLE consignments (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  visit_id uuid NOT NULL,
  point_of_sale_id uuid NOT NULL,
  store_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'settled')),
  settled_by_op uuid,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, visit_id),
  FOREIGN KEY (tenant_id, visit_id) REFERENCES visits (tenant_id, id),
  FOREIGN KEY (tenant_id, point_of_sale_id) REFERENCES points_of_sale (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, settled_by_op) REFERENCES operations (tenant_id, id),
  CHECK ((status = 'settled') = (settled_by_op IS NOT NULL))
);
SELECT enable_tenant_rls('consignments');
CREATE INDEX consignments_open_idx ON consignments (tenant_id, point_of_sale_id) WHERE status = 'open';
CREATE TRIGGER consignments_immutable BEFORE UPDATE ON consignments
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'visit_id', 'point_of_sale_id', 'store_id', 'op_id', 'created_at');
REVOKE DELETE ON consignments FROM storekeep_app;

CREATE TABLE consignment_lines (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  consignment_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  quantity bigint NOT NULL CHECK (quantity > 0),
  -- Price per sale unit agreed for goods sold from this consignment, minor units.
  unit_price bigint NOT NULL CHECK (unit_price >= 0),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, consignment_id, sku_id),
  FOREIGN KEY (tenant_id, consignment_id) REFERENCES consignments (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('consignment_lines');
CREATE TRIGGER consignment_lines_append_only BEFORE UPDATE OR DELETE ON consignment_lines
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

-- Settlement of a consignment on a later visit: every unit left is accounted
-- for as sold (money owed by the point of sale) or returned (back to the
-- store's stock, stock ledger kind consignment_return).
CREATE TABLE consignment_settlements (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  consignment_id uuid NOT NULL,
  visit_id uuid NOT NULL,
  -- Σ sold × unit_price, minor units: what the point of sale owes.
  amount_owed bigint NOT NULL CHECK (amount_owed >= 0),
  -- The journal entry (receivable of the point of sale's party / store sales
  -- revenue) posted in the same operation; none when nothing was sold.
  journal_entry_id uuid,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, consignment_id),
  FOREIGN KEY (tenant_id, journal_entry_id) REFERENCES journal_entries (tenant_id, id),
  CHECK ((amount_owed > 0) = (journal_entry_id IS NOT NULL)),
  FOREIGN KEY (tenant_id, consignment_id) REFERENCES consignments (tenant_id, id),
  FOREIGN KEY (tenant_id, visit_id) REFERENCES visits (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('consignment_settlements');
CREATE TRIGGER consignment_settlements_append_only BEFORE UPDATE OR DELETE ON consignment_settlements
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE consignment_settlement_lines (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  settlement_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  sold_quantity bigint NOT NULL CHECK (sold_quantity >= 0),
  returned_quantity bigint NOT NULL CHECK (returned_quantity >= 0),
  unit_price bigint NOT NULL CHECK (unit_price >= 0),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, settlement_id, sku_id),
  FOREIGN KEY (tenant_id, settlement_id) REFERENCES consignment_settlements (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('consignment_settlement_lines');
CREATE TRIGGER consignment_settlement_lines_append_only BEFORE UPDATE OR DELETE ON consignment_settlement_lines
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
