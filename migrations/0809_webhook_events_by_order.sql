-- Up Migration
-- A provider event is checked against the newest sequence number already
-- received for its order (receiveWebhook): the order's events, by index.
CREATE INDEX fulfilment_webhook_events_order_idx ON fulfilment_webhook_events (tenant_id, order_id);
