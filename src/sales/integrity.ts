import type { IntegrityCheck } from '../integrity/check.js';

/** Sales invariants (API.md: receipt numbers gapless per store; DESIGN.md principle 7). */
export const salesChecks: IntegrityCheck[] = [
  {
    name: 'sales_receipt_numbers_gapless',
    severity: 'critical',
    description:
      'The sales of each store carry exactly the receipt numbers 1..n, and the store\'s counter is at n (a refused sale takes no number; a voided one keeps its own).',
    // With UNIQUE (tenant, store, receipt_number) and receipt_number >= 1,
    // count = max = counter means exactly 1..n.
    sql: `
      SELECT tenant_id, store_id::text AS subject,
             jsonb_build_object('store_id', store_id, 'counter', c.last_number, 'sales', coalesce(s.sales, 0),
                                'max_receipt_number', s.max_number) AS detail
      FROM (SELECT * FROM store_receipt_counters WHERE ($1::uuid IS NULL OR tenant_id = $1)) c
      FULL JOIN (
        SELECT tenant_id, store_id, count(*) AS sales, max(receipt_number) AS max_number
        FROM sales WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, store_id
      ) s USING (tenant_id, store_id)
      WHERE coalesce(c.last_number, 0) <> coalesce(s.sales, 0) OR coalesce(s.max_number, 0) <> coalesce(c.last_number, 0)`,
  },
  {
    name: 'sale_has_items',
    severity: 'critical',
    description: 'Every sale has at least one line.',
    sql: `
      SELECT s.tenant_id, s.id::text AS subject,
             jsonb_build_object('sale_id', s.id, 'store_id', s.store_id, 'receipt_number', s.receipt_number) AS detail
      FROM sales s
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM sale_items i WHERE i.tenant_id = s.tenant_id AND i.sale_id = s.id)`,
  },
  {
    name: 'sale_total_matches_items',
    severity: 'critical',
    description: 'A sale\'s total is the sum of its line totals.',
    sql: `
      SELECT s.tenant_id, s.id::text AS subject,
             jsonb_build_object('sale_id', s.id, 'total', s.total, 'sum_of_lines', i.sum_of_lines) AS detail
      FROM sales s
      JOIN (
        SELECT tenant_id, sale_id, sum(line_total) AS sum_of_lines FROM sale_items
        WHERE ($1::uuid IS NULL OR tenant_id = $1) GROUP BY tenant_id, sale_id
      ) i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND s.total <> i.sum_of_lines`,
  },
  {
    name: 'sale_stock_matches_items',
    severity: 'critical',
    description:
      'Per sale and SKU, the sale\'s ledger rows took exactly the quantity sold minus any offline shortfall, and a void\'s ledger rows returned exactly that.',
    sql: `
      WITH sold AS (
        SELECT i.tenant_id, i.sale_id, i.sku_id, sum(i.quantity - i.shortfall_quantity) AS taken
        FROM sale_items i WHERE ($1::uuid IS NULL OR i.tenant_id = $1)
        GROUP BY i.tenant_id, i.sale_id, i.sku_id
      ), moved AS (
        SELECT s.tenant_id, s.id AS sale_id, l.sku_id,
               sum(-l.quantity_change) FILTER (WHERE l.op_id = s.op_id AND l.kind = 'sale') AS taken,
               sum(l.quantity_change) FILTER (WHERE l.op_id = s.voided_by_op AND l.kind = 'void') AS returned
        FROM sales s
        JOIN stock_ledger l ON l.tenant_id = s.tenant_id AND l.store_id = s.store_id AND l.op_id IN (s.op_id, s.voided_by_op)
        WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        GROUP BY s.tenant_id, s.id, l.sku_id
      ), voided AS (
        SELECT tenant_id, id AS sale_id, status = 'voided' AS voided FROM sales WHERE ($1::uuid IS NULL OR tenant_id = $1)
      )
      SELECT coalesce(sold.tenant_id, moved.tenant_id) AS tenant_id,
             coalesce(sold.sale_id, moved.sale_id) || '/' || coalesce(sold.sku_id, moved.sku_id) AS subject,
             jsonb_build_object('sale_id', coalesce(sold.sale_id, moved.sale_id), 'sku_id', coalesce(sold.sku_id, moved.sku_id),
                                'sold', coalesce(sold.taken, 0), 'ledger_taken', coalesce(moved.taken, 0),
                                'ledger_returned', coalesce(moved.returned, 0)) AS detail
      FROM sold
      FULL JOIN moved ON moved.tenant_id = sold.tenant_id AND moved.sale_id = sold.sale_id AND moved.sku_id = sold.sku_id
      JOIN voided v ON v.tenant_id = coalesce(sold.tenant_id, moved.tenant_id) AND v.sale_id = coalesce(sold.sale_id, moved.sale_id)
      WHERE coalesce(sold.taken, 0) <> coalesce(moved.taken, 0)
         OR coalesce(moved.returned, 0) <> CASE WHEN v.voided THEN coalesce(sold.taken, 0) ELSE 0 END`,
  },
];
