-- Up Migration
-- Partial returns of a sale (POST /v1/sales/{id}/returns): the customer
-- brings back part of what was sold — one of three items, 200 g of 600 g —
-- and gets that part's money back, the sale keeping its receipt number. Until
-- now the only way was to void the whole sale and ring the rest up again (a
-- new receipt number, and the books showed a void and a new sale).
--
-- A return is one command: its row here, one row per sale line it takes back
-- (sale_return_items: a SKU's quantity is taken from the sale's lines of that
-- SKU in line order), stock back through `return` ledger rows, a
-- `sale_return` journal entry (subject: the return) moving the refund out of
-- where the sale's money went, and the sale's running `returned_total`.
-- Invariants (src/sales/integrity.ts, sale_return_matches_lines): a line
-- never takes back more than it sold; each line's refund is what the
-- cumulative rule gives; the ledger rows and the entry match the lines.
CREATE TABLE sale_returns (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  sale_id uuid NOT NULL,
  store_id uuid NOT NULL,
  -- 1, 2, … per sale, in the order the returns were recorded (the sale row is
  -- locked by each return, so they follow one another).
  return_number integer NOT NULL CHECK (return_number >= 1),
  reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
  refund_total bigint NOT NULL CHECK (refund_total >= 0),
  -- When the till took the return back (sent with it), or null.
  client_created_at timestamptz,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, sale_id, return_number),
  UNIQUE (tenant_id, op_id),
  FOREIGN KEY (tenant_id, sale_id) REFERENCES sales (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('sale_returns');
CREATE TRIGGER sale_returns_append_only BEFORE UPDATE OR DELETE ON sale_returns
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE sale_return_items (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  return_id uuid NOT NULL,
  sale_id uuid NOT NULL,
  sale_item_id uuid NOT NULL,
  sku_id uuid NOT NULL,
  -- Base units taken back from that sale line.
  quantity bigint NOT NULL CHECK (quantity > 0),
  -- Minor units: lineTotal(returned through this return) − lineTotal(returned before it), for the line.
  refund bigint NOT NULL CHECK (refund >= 0),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, return_id, sale_item_id),
  FOREIGN KEY (tenant_id, return_id) REFERENCES sale_returns (tenant_id, id),
  FOREIGN KEY (tenant_id, sale_id) REFERENCES sales (tenant_id, id),
  FOREIGN KEY (tenant_id, sale_item_id) REFERENCES sale_items (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('sale_return_items');
CREATE INDEX sale_return_items_sale_idx ON sale_return_items (tenant_id, sale_id);
CREATE TRIGGER sale_return_items_append_only BEFORE UPDATE OR DELETE ON sale_return_items
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

GRANT SELECT, INSERT ON sale_returns, sale_return_items TO storekeep_app;

-- The sale's money taken back by its returns so far (the sum of their
-- refund_total), when the last return was recorded, and that return's
-- transaction id (stamped by the trigger below, like voided_xid): the daily
-- rollup counts a sale's revenue net of its returns, and finds the sales a
-- return changed since its last run by this id (sales_returned_xid_idx).
-- Adding the columns rewrites nothing (a constant default, nullable ones).
ALTER TABLE sales
  ADD COLUMN returned_total bigint NOT NULL DEFAULT 0,
  ADD COLUMN returned_at timestamptz,
  ADD COLUMN returned_xid xid8;
-- NOT VALID: every existing row has 0 (nothing to validate, and validating
-- would scan the sales under a lock that stops the tills). New and updated
-- rows are checked all the same.
ALTER TABLE sales ADD CONSTRAINT sales_returned_total_within_total CHECK (returned_total >= 0 AND returned_total <= total) NOT VALID;
CREATE INDEX sales_returned_xid_idx ON sales (tenant_id, returned_xid) WHERE returned_xid IS NOT NULL;

-- returned_total only grows, and only on a completed sale: a voided sale
-- cannot change (sales_status_guard), and its returns came before its void.
CREATE FUNCTION sales_returned_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.returned_total IS DISTINCT FROM OLD.returned_total OR NEW.returned_at IS DISTINCT FROM OLD.returned_at THEN
    IF OLD.status <> 'completed' OR NEW.status <> 'completed' THEN
      RAISE EXCEPTION 'only a completed sale takes a return' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.returned_total < OLD.returned_total OR NEW.returned_at IS NULL THEN
      RAISE EXCEPTION 'a return only adds to returned_total, and says when' USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER sales_returned_guard BEFORE UPDATE ON sales
  FOR EACH ROW EXECUTE FUNCTION sales_returned_guard();

-- As in 0900 / 1130, plus returned_xid: the id of the transaction that last
-- moved returned_total (a return), kept otherwise — and cleared only when it
-- was handed out by another server (1130).
CREATE OR REPLACE FUNCTION sales_stamp_change_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  next_here xid8 := pg_snapshot_xmax(pg_current_snapshot());
BEGIN
  NEW.created_xid := CASE WHEN NEW.created_xid IS NULL AND OLD.created_xid >= next_here THEN NULL ELSE OLD.created_xid END;
  NEW.voided_xid := CASE
    WHEN OLD.status = 'completed' AND NEW.status = 'voided' THEN pg_current_xact_id()
    WHEN NEW.voided_xid IS NULL AND OLD.voided_xid >= next_here THEN NULL
    ELSE OLD.voided_xid END;
  NEW.returned_xid := CASE
    WHEN NEW.returned_total IS DISTINCT FROM OLD.returned_total THEN pg_current_xact_id()
    WHEN NEW.returned_xid IS NULL AND OLD.returned_xid >= next_here THEN NULL
    ELSE OLD.returned_xid END;
  RETURN NEW;
END
$$;
