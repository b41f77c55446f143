-- Up Migration
-- Returns to a supplier (POST /v1/purchases/{id}/returns): damaged or wrong
-- goods of a purchase (migration 1140) go back to the supplier, who credits
-- them. Until now a mistaken purchase stayed on the supplier's outstanding
-- for good, and the goods left the store only by a hand adjustment.
--
-- A return is one command: its row here, one row per purchase line it sends
-- back (purchase_return_lines: a SKU's quantity is taken from the purchase's
-- lines of that SKU in line order), stock out of the purchase's store through
-- `supplier_return` ledger rows (a conditional decrement: never below zero),
-- a `purchase_return` journal entry (subject: the return) debiting the
-- supplier's payable and crediting the store's inventory by the credit, and
-- the purchase's running `returned_total`. Invariants (src/money/integrity.ts,
-- purchase_return_matches_lines): a purchase line never sends back more than
-- it bought; each line's credit is what the cumulative rule gives (as a sale
-- return's refund); the ledger rows and the entry match the lines.
CREATE TABLE purchase_returns (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  purchase_id uuid NOT NULL,
  -- The purchase's store and supplier (copied: the integrity check holds them equal).
  store_id uuid NOT NULL,
  supplier_id uuid NOT NULL,
  -- 1, 2, … per purchase, in the order the returns were recorded (the
  -- purchase row is locked by each return, so they follow one another).
  return_number integer NOT NULL CHECK (return_number >= 1),
  reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
  -- The supplier's credit note or returns slip, if any.
  reference text CHECK (length(reference) <= 200),
  -- Minor units credited: the sum of the lines' line_total.
  credit_total bigint NOT NULL CHECK (credit_total BETWEEN 0 AND 9000000000000),
  -- The `purchase_return` entry of this very operation; null when nothing is
  -- credited (goods bought at cost 0), as a purchase of total 0 has none.
  entry_id uuid,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, purchase_id, return_number),
  UNIQUE (tenant_id, op_id),
  -- What its lines name: a line's operation is its return's.
  UNIQUE (tenant_id, op_id, id),
  FOREIGN KEY (tenant_id, purchase_id) REFERENCES purchases (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, supplier_id) REFERENCES parties (tenant_id, id),
  FOREIGN KEY (tenant_id, entry_id, op_id) REFERENCES journal_entries (tenant_id, id, op_id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  CHECK ((entry_id IS NULL) = (credit_total = 0))
);
SELECT enable_tenant_rls('purchase_returns');
CREATE TRIGGER purchase_returns_append_only BEFORE UPDATE OR DELETE ON purchase_returns
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE purchase_return_lines (
  tenant_id uuid NOT NULL,
  return_id uuid NOT NULL,
  purchase_id uuid NOT NULL,
  -- The purchase line sent back from (purchase_lines.line_number).
  line_number integer NOT NULL,
  sku_id uuid NOT NULL,
  -- Base units sent back from that purchase line.
  quantity bigint NOT NULL CHECK (quantity > 0),
  -- The purchase line's unit cost (copied: the integrity check holds it equal).
  unit_cost bigint NOT NULL CHECK (unit_cost >= 0),
  -- Minor units credited: lineTotal(sent back through this return) − lineTotal(sent back before it), for the line.
  line_total bigint NOT NULL CHECK (line_total BETWEEN 0 AND 9000000000000),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, return_id, line_number),
  FOREIGN KEY (tenant_id, op_id, return_id) REFERENCES purchase_returns (tenant_id, op_id, id),
  FOREIGN KEY (tenant_id, purchase_id, line_number) REFERENCES purchase_lines (tenant_id, purchase_id, line_number),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id)
);
SELECT enable_tenant_rls('purchase_return_lines');
-- What a purchase's lines sent back so far (read by each return, by GET
-- /v1/purchases/{id} and by the integrity check), by the purchase.
CREATE INDEX purchase_return_lines_purchase_idx ON purchase_return_lines (tenant_id, purchase_id, line_number);
CREATE TRIGGER purchase_return_lines_append_only BEFORE UPDATE OR DELETE ON purchase_return_lines
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

REVOKE UPDATE, DELETE ON purchase_returns, purchase_return_lines FROM storekeep_app;

-- The purchase's money credited back by its returns so far (the sum of their
-- credit_total) and when the last return was recorded. Adding the columns
-- rewrites nothing (a constant default, a nullable one). NOT VALID: every
-- existing row has 0 (nothing to validate, and validating would scan the
-- purchases under a lock that stops receipts). New and updated rows are
-- checked all the same.
ALTER TABLE purchases
  ADD COLUMN returned_total bigint NOT NULL DEFAULT 0,
  ADD COLUMN returned_at timestamptz;
ALTER TABLE purchases ADD CONSTRAINT purchases_returned_total_within_total CHECK (returned_total >= 0 AND returned_total <= total) NOT VALID;

-- purchases was append-only (1140); now a return may move returned_total and
-- returned_at, and nothing else: the rest of the row stays as the receipt
-- wrote it, a purchase is never deleted, and returned_total only grows. The
-- app role may update those two columns only — which is also what lets a
-- return lock the purchase row (SELECT … FOR NO KEY UPDATE needs an UPDATE
-- privilege), so the returns of one purchase follow one another.
CREATE FUNCTION purchases_returned_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'purchases is append-only: DELETE is not allowed' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.tenant_id, NEW.id, NEW.store_id, NEW.supplier_id, NEW.total, NEW.entry_id, NEW.reference, NEW.op_id, NEW.created_at)
     IS DISTINCT FROM (OLD.tenant_id, OLD.id, OLD.store_id, OLD.supplier_id, OLD.total, OLD.entry_id, OLD.reference, OLD.op_id, OLD.created_at) THEN
    RAISE EXCEPTION 'purchases is append-only: only a return moves returned_total' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.returned_total < OLD.returned_total OR (NEW.returned_total IS DISTINCT FROM OLD.returned_total AND NEW.returned_at IS NULL) THEN
    RAISE EXCEPTION 'a return only adds to returned_total, and says when' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER purchases_append_only ON purchases;
CREATE TRIGGER purchases_returned_guard BEFORE UPDATE OR DELETE ON purchases
  FOR EACH ROW EXECUTE FUNCTION purchases_returned_guard();
GRANT UPDATE (returned_total, returned_at) ON purchases TO storekeep_app;
