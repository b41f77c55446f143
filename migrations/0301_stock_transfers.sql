-- Up Migration
-- Stock transfers between stores. State machine (src/transfers/transferState.ts):
--   requested ──approve──► approved ──receive──► received
--       └──────cancel────► cancelled
-- Approve moves stock out of the source (stock ledger `transfer_out`) and puts
-- it in transit on the items; receive moves what arrived into the destination
-- (`transfer_in`), clears the transit, and records any shortfall for review.
-- Each transition is one conditional UPDATE on the status (and version).

CREATE TABLE stock_transfers (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  source_store_id uuid NOT NULL,
  destination_store_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'approved', 'received', 'cancelled')),
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  note text CHECK (length(note) <= 500),
  requested_by text NOT NULL,
  approved_by text,
  approved_op uuid,
  approved_at timestamptz,
  received_by text,
  received_op uuid,
  received_at timestamptz,
  cancelled_by text,
  cancelled_op uuid,
  cancelled_at timestamptz,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, source_store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, destination_store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, approved_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, received_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, cancelled_op) REFERENCES operations (tenant_id, id),
  CHECK (source_store_id <> destination_store_id),
  CHECK ((approved_op IS NOT NULL) = (status IN ('approved', 'received'))),
  CHECK ((received_op IS NOT NULL) = (status = 'received')),
  CHECK ((cancelled_op IS NOT NULL) = (status = 'cancelled'))
);
SELECT enable_tenant_rls('stock_transfers');
CREATE INDEX stock_transfers_source_idx ON stock_transfers (tenant_id, source_store_id, id);
CREATE INDEX stock_transfers_destination_idx ON stock_transfers (tenant_id, destination_store_id, id);
CREATE TRIGGER stock_transfers_immutable BEFORE UPDATE ON stock_transfers
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'source_store_id', 'destination_store_id', 'requested_by', 'op_id', 'created_at');
REVOKE DELETE ON stock_transfers FROM storekeep_app;

CREATE TABLE stock_transfer_items (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  transfer_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  -- Base units requested (and, once approved, sent).
  quantity bigint NOT NULL CHECK (quantity > 0),
  -- Left the source, not yet arrived: `quantity` while approved, 0 otherwise.
  quantity_in_transit bigint NOT NULL DEFAULT 0 CHECK (quantity_in_transit >= 0 AND quantity_in_transit <= quantity),
  -- Arrived at the destination (set on receive); quantity − received is the shortfall.
  quantity_received bigint CHECK (quantity_received >= 0 AND quantity_received <= quantity),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, transfer_id, sku_id),
  FOREIGN KEY (tenant_id, transfer_id) REFERENCES stock_transfers (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('stock_transfer_items');
CREATE TRIGGER stock_transfer_items_immutable BEFORE UPDATE ON stock_transfer_items
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'transfer_id', 'sku_id', 'quantity', 'op_id');
REVOKE DELETE ON stock_transfer_items FROM storekeep_app;
