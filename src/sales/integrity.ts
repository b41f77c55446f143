import { shortageReviewItems, type IntegrityCheck } from '../integrity/check.js';

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
    description:
      'A sale\'s total is the sum of its line totals, and each line\'s total is its quantity at its unit price (pieces exactly; grams or millimetres per 1000, rounded half up to a minor unit, as src/sales/lineTotal.ts computes it).',
    sql: `
      SELECT s.tenant_id, s.id::text AS subject,
             jsonb_build_object('sale_id', s.id, 'total', s.total, 'sum_of_lines', i.sum_of_lines, 'lines_off', i.lines_off) AS detail
      FROM sales s
      JOIN (
        SELECT i.tenant_id, i.sale_id, sum(i.line_total) AS sum_of_lines,
               coalesce(jsonb_agg(jsonb_build_object('line_number', i.line_number, 'line_total', i.line_total, 'at_price', x.at_price))
                          FILTER (WHERE i.line_total <> x.at_price), '[]'::jsonb) AS lines_off
        FROM sale_items i
        JOIN skus k ON k.tenant_id = i.tenant_id AND k.id = i.sku_id
        CROSS JOIN LATERAL (
          SELECT CASE WHEN k.unit = 'piece' THEN i.quantity::numeric * i.unit_price
                      ELSE div(i.quantity::numeric * i.unit_price * 2 + 1000, 2000) END AS at_price
        ) x
        WHERE ($1::uuid IS NULL OR i.tenant_id = $1) GROUP BY i.tenant_id, i.sale_id
      ) i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND (s.total <> i.sum_of_lines OR i.lines_off <> '[]'::jsonb)`,
  },
  {
    name: 'sale_stock_matches_items',
    severity: 'critical',
    description:
      'Per sale and SKU, the sale\'s ledger rows took exactly the quantity sold minus any offline shortfall (an online sale has none: it is refused when short), and a void\'s ledger rows returned exactly that; and no stock moved as a sale or a void (ledger kind sale or void) except in the store of a sale by its own operation or the one that voided it.',
    sql: `
      WITH sold AS (
        SELECT i.tenant_id, i.sale_id, i.sku_id, sum(i.quantity - i.shortfall_quantity) AS taken, sum(i.shortfall_quantity) AS shortfall
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
        SELECT tenant_id, id AS sale_id, status = 'voided' AS voided, source = 'online' AS online FROM sales WHERE ($1::uuid IS NULL OR tenant_id = $1)
      )
      SELECT coalesce(sold.tenant_id, moved.tenant_id) AS tenant_id,
             coalesce(sold.sale_id, moved.sale_id) || '/' || coalesce(sold.sku_id, moved.sku_id) AS subject,
             jsonb_build_object('sale_id', coalesce(sold.sale_id, moved.sale_id), 'sku_id', coalesce(sold.sku_id, moved.sku_id),
                                'sold', coalesce(sold.taken, 0), 'ledger_taken', coalesce(moved.taken, 0),
                                'ledger_returned', coalesce(moved.returned, 0), 'shortfall', coalesce(sold.shortfall, 0), 'source', CASE WHEN v.online THEN 'online' ELSE 'offline' END) AS detail
      FROM sold
      FULL JOIN moved ON moved.tenant_id = sold.tenant_id AND moved.sale_id = sold.sale_id AND moved.sku_id = sold.sku_id
      JOIN voided v ON v.tenant_id = coalesce(sold.tenant_id, moved.tenant_id) AND v.sale_id = coalesce(sold.sale_id, moved.sale_id)
      WHERE coalesce(sold.taken, 0) <> coalesce(moved.taken, 0)
         OR coalesce(moved.returned, 0) <> CASE WHEN v.voided THEN coalesce(sold.taken, 0) ELSE 0 END
         OR (v.online AND coalesce(sold.shortfall, 0) <> 0)
      UNION ALL
      -- Stray rows: stock that left (or came back) as a sale (a void) in a
      -- store, under an operation that is no sale (no void of a sale) of that store.
      SELECT l.tenant_id, l.op_id || '/' || l.kind || '/' || l.store_id || '/' || l.sku_id AS subject,
             jsonb_build_object('op_id', l.op_id, 'kind', l.kind, 'store_id', l.store_id, 'sku_id', l.sku_id,
                                'quantity_change', sum(l.quantity_change), 'ledger_ids', jsonb_agg(l.id ORDER BY l.id)) AS detail
      FROM stock_ledger l
      LEFT JOIN sales sold_by ON l.kind = 'sale' AND sold_by.tenant_id = l.tenant_id AND sold_by.op_id = l.op_id AND sold_by.store_id = l.store_id
      LEFT JOIN sales voided_by ON l.kind = 'void' AND voided_by.tenant_id = l.tenant_id AND voided_by.voided_by_op = l.op_id AND voided_by.store_id = l.store_id
      WHERE ($1::uuid IS NULL OR l.tenant_id = $1) AND l.kind IN ('sale', 'void') AND sold_by.id IS NULL AND voided_by.id IS NULL
      GROUP BY l.tenant_id, l.op_id, l.kind, l.store_id, l.sku_id`,
  },
  {
    name: 'sale_shortfall_matches_review_item',
    severity: 'critical',
    description:
      "Every offline sale that recorded a shortfall has exactly one offline_sale_shortage review item (open or resolved) naming it — subject the sale, the sale's store and operation, its receipt number — with the same figures per SKU (requested = the quantity its lines sold, shortfall = their shortfall_quantity, available = the difference; one entry per short SKU, none other), and every offline_sale_shortage item names such a sale. The item is how a person learns that the store's stock figure is missing goods.",
    // A resolution changes only the item's status and resolution columns
    // (kind, subject, detail and op_id are immutable), so a resolved item is
    // held to the same figures. An online sale with a shortfall is
    // sale_stock_matches_items' finding, not this one's. Ids in the detail
    // are compared lower-cased (a client may send a SKU id in capitals), SKUs
    // in byte order.
    sql: `
      WITH short AS (
        SELECT i.tenant_id, i.sale_id::text AS subject_id,
               jsonb_agg(jsonb_build_object('sku_id', i.sku_id, 'requested', i.requested, 'available', i.requested - i.shortfall, 'shortfall', i.shortfall)
                         ORDER BY i.sku_id::text COLLATE "C") FILTER (WHERE i.shortfall > 0) AS shortages
        FROM (
          SELECT l.tenant_id, l.sale_id, l.sku_id, sum(l.quantity) AS requested, sum(l.shortfall_quantity) AS shortfall
          FROM sale_items l JOIN sales s ON s.tenant_id = l.tenant_id AND s.id = l.sale_id
          WHERE ($1::uuid IS NULL OR l.tenant_id = $1) AND s.source = 'offline'
          GROUP BY l.tenant_id, l.sale_id, l.sku_id
        ) i
        GROUP BY i.tenant_id, i.sale_id
        HAVING sum(i.shortfall) > 0
      ), items AS (${shortageReviewItems('offline_sale_shortage')})
      SELECT k.tenant_id, k.subject_id AS subject,
             jsonb_build_object('sale_id', s.id, 'source', s.source, 'store_id', s.store_id, 'op_id', s.op_id, 'receipt_number', s.receipt_number,
                                'shortages', short.shortages, 'review_items', r.review_items) AS detail
      FROM (SELECT tenant_id, subject_id FROM short UNION SELECT tenant_id, subject_id FROM items) k
      LEFT JOIN short ON short.tenant_id = k.tenant_id AND short.subject_id = k.subject_id
      LEFT JOIN sales s ON s.tenant_id = k.tenant_id AND s.id::text = k.subject_id
      CROSS JOIN LATERAL (
        SELECT count(it.id) AS items,
               count(it.id) FILTER (WHERE it.subject_type = 'sale' AND it.store_id = s.store_id AND it.op_id = s.op_id
                                      AND lower(it.detail ->> 'sale_id') = s.id::text AND it.detail -> 'receipt_number' = to_jsonb(s.receipt_number)
                                      AND it.shortages = short.shortages) AS matching,
               coalesce(jsonb_agg(jsonb_build_object('id', it.id, 'status', it.status, 'subject_type', it.subject_type, 'store_id', it.store_id, 'op_id', it.op_id,
                                                     'sale_id', it.detail -> 'sale_id', 'receipt_number', it.detail -> 'receipt_number', 'shortages', it.shortages)
                                  ORDER BY it.id) FILTER (WHERE it.id IS NOT NULL), '[]'::jsonb) AS review_items
        FROM items it WHERE it.tenant_id = k.tenant_id AND it.subject_id = k.subject_id
      ) r
      WHERE NOT (r.items = 1 AND r.matching = 1)`,
  },
];
