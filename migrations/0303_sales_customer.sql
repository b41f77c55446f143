-- Up Migration
-- A sale's customer is a known party (the money part validates it is a
-- customer, and that a credit sale names one, before the sale is written).
ALTER TABLE sales ADD CONSTRAINT sales_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES parties (tenant_id, id);
CREATE INDEX sales_customer_idx ON sales (tenant_id, customer_id) WHERE customer_id IS NOT NULL;
