-- Up Migration
-- Orders handed to an outside fulfilment provider. The order row is the state
-- machine (every transition a conditional UPDATE … WHERE status = expected);
-- order_status_history is its append-only history; fulfilment_webhook_events
-- records every provider event once (replays and duplicates change nothing).

CREATE TABLE orders (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  store_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'submitting', 'submitted', 'processing', 'completed', 'failed', 'cancelled')),
  shipping_address jsonb NOT NULL,
  payment_reference text NOT NULL CHECK (length(payment_reference) BETWEEN 1 AND 200),
  -- Sent as Idempotency-Key on every create call (first try, retries, recovery):
  -- the provider keeps one order per key, so a retried call never makes a second one.
  provider_key text NOT NULL UNIQUE,
  provider_order_id text,
  -- Calls to create the order at the provider, and times the stuck-order sweep recovered it.
  submit_attempts integer NOT NULL DEFAULT 0 CHECK (submit_attempts >= 0),
  recoveries integer NOT NULL DEFAULT 0 CHECK (recoveries >= 0),
  last_error text,
  -- When the status last changed (or recovery last looked): the stuck-order clock.
  status_changed_at timestamptz NOT NULL DEFAULT now(),
  version integer NOT NULL DEFAULT 1,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('orders');
CREATE INDEX orders_store_idx ON orders (tenant_id, store_id, id);
-- The stuck-order sweep reads only the few orders still on their way out.
CREATE INDEX orders_in_flight_idx ON orders (status_changed_at) WHERE status IN ('pending', 'submitting');
CREATE TRIGGER orders_immutable BEFORE UPDATE ON orders
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'store_id', 'op_id', 'provider_key', 'shipping_address', 'payment_reference', 'created_at');
REVOKE DELETE ON orders FROM storekeep_app;

CREATE TABLE order_lines (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  order_id uuid NOT NULL,
  line_no integer NOT NULL CHECK (line_no >= 1),
  sku_id uuid NOT NULL,
  quantity bigint NOT NULL CHECK (quantity > 0),
  op_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, order_id, line_no),
  FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id),
  FOREIGN KEY (tenant_id, sku_id) REFERENCES skus (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('order_lines');
CREATE TRIGGER order_lines_append_only BEFORE UPDATE OR DELETE ON order_lines
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE order_status_history (
  tenant_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  order_id uuid NOT NULL,
  from_status text,
  to_status text NOT NULL,
  -- Who moved it: api (create, manual), worker (submit), webhook (provider event), recovery (stuck-order sweep).
  source text NOT NULL CHECK (source IN ('api', 'worker', 'webhook', 'recovery')),
  detail jsonb,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('order_status_history');
CREATE INDEX order_status_history_order_idx ON order_status_history (tenant_id, order_id, id);
CREATE TRIGGER order_status_history_append_only BEFORE UPDATE OR DELETE ON order_status_history
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE fulfilment_webhook_events (
  tenant_id uuid NOT NULL,
  -- The provider's event id: a second delivery of the same event is a no-op.
  id text NOT NULL CHECK (length(id) BETWEEN 1 AND 200),
  order_id uuid NOT NULL,
  provider_status text NOT NULL,
  -- applied: moved the order; ignored: stale (out of order) or the order was already final.
  outcome text NOT NULL CHECK (outcome IN ('applied', 'ignored')),
  payload jsonb NOT NULL,
  op_id uuid NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('fulfilment_webhook_events');
CREATE TRIGGER fulfilment_webhook_events_append_only BEFORE UPDATE OR DELETE ON fulfilment_webhook_events
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
