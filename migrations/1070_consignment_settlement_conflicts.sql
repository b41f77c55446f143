-- Up Migration
-- A settlement synced late, after its consignment was settled by another
-- operation. Field agents work offline: agent A settles consignment C on the
-- phone, and meanwhile another visit settles C online. When A's completion
-- arrives (sent with client_created_at), the goods A left and the visit are
-- recorded as usual; A's settlement is not (C is settled once: no money, no
-- returned stock, C untouched) — it used to refuse the whole completion
-- (409), losing the goods that had really left the store.
--
-- What A reported is kept here, one row per such visit, beside the
-- `consignment_settled_twice` review item a person decides on. The
-- completion's answer (and its replays, and GET /v1/visits/{id}) tell the
-- device its settlement was not recorded, and why, from this row.
CREATE TABLE consignment_settlement_conflicts (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  -- The visit whose completion reported the settlement (completed by op_id).
  visit_id uuid NOT NULL,
  consignment_id uuid NOT NULL,
  -- The settlement already recorded for the consignment, and its operation.
  settlement_id uuid NOT NULL,
  settled_by_op uuid NOT NULL,
  -- What the late completion reported, per consignment line
  -- ({ sku_id, sold_quantity, returned_quantity, unit_price }), and what it
  -- would have owed: recorded nowhere else as money or stock.
  lines jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
  amount_owed bigint NOT NULL CHECK (amount_owed >= 0),
  review_item_id uuid NOT NULL,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, visit_id),
  FOREIGN KEY (tenant_id, visit_id) REFERENCES visits (tenant_id, id),
  FOREIGN KEY (tenant_id, consignment_id) REFERENCES consignments (tenant_id, id),
  FOREIGN KEY (tenant_id, settlement_id) REFERENCES consignment_settlements (tenant_id, id),
  FOREIGN KEY (tenant_id, settled_by_op) REFERENCES operations (tenant_id, id),
  FOREIGN KEY (tenant_id, review_item_id) REFERENCES review_items (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  -- Settled by ANOTHER operation: a completion never conflicts with itself.
  CHECK (settled_by_op <> op_id)
);
SELECT enable_tenant_rls('consignment_settlement_conflicts');
CREATE TRIGGER consignment_settlement_conflicts_append_only BEFORE UPDATE OR DELETE ON consignment_settlement_conflicts
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
