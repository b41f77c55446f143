-- Up Migration
-- Workshop pieces: rolls (a length), cut pieces, spare pieces (a count) and
-- bundles of a piece-tracked SKU in a store. Pieces are never deleted or
-- changed in what they are: a cut or a combine consumes its inputs and creates
-- new pieces; a revert restores the inputs and soft-deletes the outputs, found
-- by operation id (created_by_op / consumed_by_op), never by time.
-- Invariant: stock_balances.quantity of a piece-tracked SKU = Σ quantity of its
-- live pieces (not deleted, status in_stock or reserved).

CREATE TABLE pieces (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  kind text NOT NULL CHECK (kind IN ('roll', 'cut', 'spare', 'bundle')),
  -- Base units of the SKU: millimetres for rolls and cut pieces, pieces for
  -- spare pieces and bundles. Fixed for the life of the piece.
  quantity bigint NOT NULL CHECK (quantity > 0),
  status text NOT NULL DEFAULT 'in_stock' CHECK (status IN ('in_stock', 'reserved', 'consumed', 'sold')),
  -- Raised by the trigger on every change (optimistic concurrency for clients).
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  -- The received piece this one descends from (itself for a received piece).
  original_piece_id uuid NOT NULL,
  -- The pieces the operation that created this one consumed.
  source_piece_ids uuid[] NOT NULL DEFAULT '{}',
  op_id uuid NOT NULL,
  created_by_op uuid NOT NULL CHECK (created_by_op = op_id),
  consumed_by_op uuid,
  reserved_by_op uuid,
  reserved_until timestamptz,
  sold_by_op uuid,
  -- Soft deletion: the operation (a revert) that removed this piece.
  deleted_by_op uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, original_piece_id) REFERENCES pieces (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, created_by_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, consumed_by_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, reserved_by_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, sold_by_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, deleted_by_op) REFERENCES operations (tenant_id, id),
  CONSTRAINT pieces_consumed_by_op CHECK ((status = 'consumed') = (consumed_by_op IS NOT NULL)),
  CONSTRAINT pieces_reserved_by_op CHECK ((status = 'reserved') = (reserved_by_op IS NOT NULL) AND (reserved_by_op IS NULL) = (reserved_until IS NULL)),
  CONSTRAINT pieces_sold_by_op CHECK ((status = 'sold') = (sold_by_op IS NOT NULL)),
  CONSTRAINT pieces_deleted_in_stock CHECK (deleted_by_op IS NULL OR status = 'in_stock')
);
SELECT enable_tenant_rls('pieces');
CREATE INDEX pieces_created_by_op_idx ON pieces (tenant_id, created_by_op);
CREATE INDEX pieces_consumed_by_op_idx ON pieces (tenant_id, consumed_by_op) WHERE consumed_by_op IS NOT NULL;
CREATE INDEX pieces_reserved_by_op_idx ON pieces (tenant_id, reserved_by_op) WHERE reserved_by_op IS NOT NULL;
CREATE INDEX pieces_reserved_until_idx ON pieces (reserved_until) WHERE status = 'reserved';
CREATE INDEX pieces_live_idx ON pieces (tenant_id, store_id, sku_id, id) WHERE deleted_by_op IS NULL AND status IN ('in_stock', 'reserved');

CREATE TRIGGER pieces_immutable BEFORE UPDATE ON pieces
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change(
    'tenant_id', 'id', 'store_id', 'sku_id', 'kind', 'quantity', 'original_piece_id', 'source_piece_ids', 'op_id', 'created_by_op', 'created_at');

-- Every change raises the version; a soft-deleted piece is frozen.
CREATE FUNCTION pieces_versioned() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.deleted_by_op IS NOT NULL THEN
    RAISE EXCEPTION 'piece % was deleted by operation % and cannot change', OLD.id, OLD.deleted_by_op
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  NEW.version := OLD.version + 1;
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
CREATE TRIGGER pieces_versioned BEFORE UPDATE ON pieces
  FOR EACH ROW EXECUTE FUNCTION pieces_versioned();
CREATE TRIGGER pieces_no_delete BEFORE DELETE ON pieces
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
CREATE TRIGGER pieces_no_truncate BEFORE TRUNCATE ON pieces
  FOR EACH STATEMENT EXECUTE FUNCTION forbid_update_delete();
REVOKE DELETE, TRUNCATE ON pieces FROM storekeep_app;

-- The reservation sweep runs across tenants: this owner-run function names
-- the tenants that have expired reservations (ids only); the sweep then
-- releases them tenant by tenant under row-level security.
CREATE FUNCTION tenants_with_expired_piece_reservations() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT DISTINCT tenant_id FROM pieces WHERE status = 'reserved' AND reserved_until <= now()
$$;
