import type { IntegrityCheck } from '../integrity/check.js';
import { madeByTillThen } from './countStock.js';

/** Stock invariants (DESIGN.md principle 2: balances are the lock, ledgers are the history). */
export const inventoryChecks: IntegrityCheck[] = [
  {
    name: 'stock_ledger_matches_balance',
    severity: 'critical',
    description: 'Every stock balance equals the sum of its ledger rows, and no ledger rows are left without their balance row.',
    // A FULL JOIN: ledger rows whose balance row is gone (an orphan the
    // foreign key normally prevents) are found too, with balance null.
    sql: `
      SELECT coalesce(b.tenant_id, l.tenant_id) AS tenant_id,
             coalesce(b.store_id, l.store_id) || '/' || coalesce(b.sku_id, l.sku_id) AS subject,
             jsonb_build_object('store_id', coalesce(b.store_id, l.store_id), 'sku_id', coalesce(b.sku_id, l.sku_id),
                                'balance', b.quantity, 'ledger_sum', coalesce(l.total, 0)) AS detail
      FROM (SELECT tenant_id, store_id, sku_id, quantity FROM stock_balances WHERE ($1::uuid IS NULL OR tenant_id = $1)) b
      FULL JOIN (
        SELECT tenant_id, store_id, sku_id, sum(quantity_change) AS total
        FROM stock_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, store_id, sku_id
      ) l ON l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id
      WHERE b.quantity IS DISTINCT FROM coalesce(l.total, 0)`,
  },
  {
    name: 'stock_ledger_running_totals',
    severity: 'critical',
    description:
      'Every stock ledger row\'s quantity_after is the sum of its pair\'s changes up to and including it (rows in id order, the order they were applied), so the history GET …/ledger shows is the stock as it was. Reported once per store and SKU, at the first row that is off.',
    // One pass in the order of stock_ledger_balance_idx (tenant, store, SKU, id): no sort.
    sql: `
      WITH chain AS (
        SELECT tenant_id, store_id, sku_id, id, quantity_after,
               sum(quantity_change) OVER (PARTITION BY tenant_id, store_id, sku_id ORDER BY id) AS running
        FROM stock_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1)
      )
      SELECT DISTINCT ON (tenant_id, store_id, sku_id)
             tenant_id, store_id || '/' || sku_id AS subject,
             jsonb_build_object('store_id', store_id, 'sku_id', sku_id, 'ledger_id', id, 'quantity_after', quantity_after, 'running_sum', running) AS detail
      FROM chain WHERE quantity_after <> running
      ORDER BY tenant_id, store_id, sku_id, id`,
  },
  {
    name: 'stock_not_negative',
    severity: 'critical',
    description: 'No stock balance is below zero (the CHECK constraint is the last defence; this finds it dropped or bypassed).',
    sql: `
      SELECT b.tenant_id, b.store_id || '/' || b.sku_id AS subject,
             jsonb_build_object('store_id', b.store_id, 'sku_id', b.sku_id, 'quantity', b.quantity) AS detail
      FROM stock_balances b
      WHERE ($1::uuid IS NULL OR b.tenant_id = $1) AND b.quantity < 0`,
  },
  {
    name: 'stock_snapshot_matches_ledger',
    severity: 'critical',
    description:
      'Every daily stock snapshot (store, SKU, UTC day) equals the sum of that pair\'s ledger rows up to the end of its day, so stock "as of" a moment, read from the snapshot, is what the ledger says.',
    // One pass over the ledger: per pair and UTC day its change, then the
    // running sum (the balance at the end of each day that has ledger rows:
    // the only days a snapshot is written for), joined to the snapshots.
    sql: `
      WITH daily AS (
        SELECT tenant_id, store_id, sku_id, (created_at AT TIME ZONE 'UTC')::date AS day, sum(quantity_change) AS change
        FROM stock_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY 1, 2, 3, 4
      ), running AS (
        SELECT tenant_id, store_id, sku_id, day, sum(change) OVER (PARTITION BY tenant_id, store_id, sku_id ORDER BY day) AS quantity
        FROM daily
      )
      SELECT s.tenant_id, s.store_id || '/' || s.sku_id || '/' || s.snapshot_date AS subject,
             jsonb_build_object('store_id', s.store_id, 'sku_id', s.sku_id, 'snapshot_date', s.snapshot_date,
                                'snapshot', s.quantity, 'ledger', r.quantity) AS detail
      FROM stock_snapshots s
      LEFT JOIN running r ON r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.sku_id = s.sku_id AND r.day = s.snapshot_date
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND s.quantity IS DISTINCT FROM r.quantity`,
  },
  {
    name: 'stock_count_matches_ledger',
    severity: 'critical',
    description:
      "Every stock count has lines, each with variance = counted − expected and expected the stock its store's ledger held of the SKU at the count's counted_at (the quantity_after of the last row at or before it, plus the variances of earlier counts of the SKU whose rows were written after that moment, plus what the synced sales, and the voids and returns carrying the till's time, made by the tills at or before that moment and recorded after it moved: their sale, void, return and count_correction rows); each line whose variance is not 0 moved its balance through exactly one stock ledger row of kind count, of the count's operation, store and SKU, named by the line, whose quantity_change is the variance and quantity_after the line's; a line of variance 0 has none; and no count ledger row is left without its count's line.",
    // From each count: its lines (with the ledger as of counted_at, one
    // backwards probe of stock_ledger_history_idx per line, the count's own
    // rows left out; when an earlier count's row was stamped, from
    // stock_ledger_count_idx: by its id, the planner read the whole ledger) and its operation's count rows (stock_ledger_count_idx),
    // matched by store and SKU. Then the count rows of operations that
    // recorded no count at all.
    sql: `
      SELECT c.tenant_id, c.id::text AS subject,
             jsonb_build_object('store_id', c.store_id, 'op_id', c.op_id, 'counted_at', c.counted_at, 'lines', l.lines, 'lines_off', m.off) AS detail
      FROM stock_counts c
      CROSS JOIN LATERAL (
        SELECT count(*) AS lines FROM stock_count_lines li WHERE li.tenant_id = c.tenant_id AND li.count_id = c.id
      ) l
      CROSS JOIN LATERAL (
        SELECT coalesce(jsonb_agg(jsonb_build_object('store_id', q.store_id, 'sku_id', q.sku_id, 'counted', q.counted_quantity, 'expected', q.expected_quantity,
                                                     'variance', q.variance, 'ledger_at_counted_at', q.ledger_then, 'ledger_id', q.ledger_id,
                                                     'ledger_rows', q.ledger_rows, 'ledger_change', q.ledger_change, 'quantity_after', q.quantity_after,
                                                     'ledger_quantity_after', q.ledger_after) ORDER BY q.sku_id), '[]'::jsonb) AS off
        FROM (
          SELECT coalesce(li.store_id, sl.store_id) AS store_id, coalesce(li.sku_id, sl.sku_id) AS sku_id,
                 li.counted_quantity, li.expected_quantity, li.variance, li.ledger_then, li.ledger_id, li.quantity_after,
                 coalesce(sl.rows, 0) AS ledger_rows, sl.change AS ledger_change, sl.after AS ledger_after, sl.first_id
          FROM (
            SELECT c.store_id, x.sku_id, x.counted_quantity, x.expected_quantity, x.variance, x.ledger_id, x.quantity_after,
                   coalesce((SELECT h.quantity_after FROM stock_ledger h
                             WHERE h.tenant_id = x.tenant_id AND h.store_id = c.store_id AND h.sku_id = x.sku_id
                               AND h.created_at <= c.counted_at AND h.op_id <> c.op_id
                             ORDER BY h.created_at DESC, h.id DESC LIMIT 1), 0)
                   + coalesce((SELECT sum(y.variance) FROM stock_count_lines y
                               JOIN stock_counts z ON z.tenant_id = y.tenant_id AND z.id = y.count_id
                               WHERE y.tenant_id = x.tenant_id AND y.sku_id = x.sku_id AND z.store_id = c.store_id AND z.id <> c.id
                                 AND z.counted_at < c.counted_at
                                 AND (SELECT max(r.created_at) FROM stock_ledger r
                                      WHERE r.kind = 'count' AND r.tenant_id = y.tenant_id AND r.op_id = z.op_id AND r.store_id = z.store_id AND r.sku_id = y.sku_id) > c.counted_at), 0)
                   -- synced sales the tills made at or before counted_at, recorded after it (their sale and count_correction
                   -- rows; one recorded after the count moved the balance by 0): stock_ledger_history_idx from counted_at on
                   -- (no filter on kind: a sale's operation writes no other; one the planner estimated to match no row —
                   -- a tenant without sales — made it read the whole ledger instead of the index)
                   -- and likewise voids and returns with the till's time at or before counted_at, recorded after it
                   -- (their void/return and count_correction rows): in the same pass, each row's operation looked up
                   -- by its kind (sales_offline_op_idx, sales_till_void_op_idx, sale_returns_till_op_idx)
                   + coalesce((SELECT sum(h.quantity_change) FROM stock_ledger h
                               WHERE h.tenant_id = x.tenant_id AND h.store_id = c.store_id AND h.sku_id = x.sku_id
                                 AND h.created_at > c.counted_at
                                 AND ${madeByTillThen('h', 'c.counted_at')}), 0) AS ledger_then
            FROM stock_count_lines x WHERE x.tenant_id = c.tenant_id AND x.count_id = c.id
          ) li
          FULL JOIN (
            SELECT r.store_id, r.sku_id, count(*) AS rows, sum(r.quantity_change) AS change, min(r.quantity_after) AS after, min(r.id) AS first_id
            FROM stock_ledger r WHERE r.tenant_id = c.tenant_id AND r.op_id = c.op_id AND r.kind = 'count'
            GROUP BY r.store_id, r.sku_id
          ) sl ON sl.store_id = li.store_id AND sl.sku_id = li.sku_id
        ) q
        WHERE q.counted_quantity IS NULL
           OR q.variance IS DISTINCT FROM q.counted_quantity - q.expected_quantity
           OR q.expected_quantity IS DISTINCT FROM q.ledger_then
           OR q.ledger_rows <> CASE WHEN q.variance = 0 THEN 0 ELSE 1 END
           OR (q.ledger_rows > 0 AND (q.ledger_change IS DISTINCT FROM q.variance OR q.ledger_after IS DISTINCT FROM q.quantity_after))
           OR q.ledger_id IS DISTINCT FROM q.first_id
      ) m
      WHERE ($1::uuid IS NULL OR c.tenant_id = $1) AND (l.lines = 0 OR m.off <> '[]'::jsonb)
      UNION ALL
      SELECT r.tenant_id, 'op:' || r.op_id AS subject,
             jsonb_build_object('op_id', r.op_id, 'count_exists', false, 'ledger_rows', jsonb_agg(r.id ORDER BY r.id)) AS detail
      FROM stock_ledger r
      WHERE r.kind = 'count' AND ($1::uuid IS NULL OR r.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM stock_counts c WHERE c.tenant_id = r.tenant_id AND c.op_id = r.op_id)
      GROUP BY r.tenant_id, r.op_id`,
  },
  {
    name: 'count_correction_matches_sale',
    severity: 'critical',
    description:
      "Every stock ledger row of kind count_correction is in the operation of a synced sale, of a void or of a return that carries the till's time, of the same store, and cancels that operation's own rows of the SKU (its sale rows: gives back exactly what they took, +q; its void or return rows: takes out exactly what they put back, −q — the operation's net stock change is 0), one row per operation and SKU, and names (reason `count <id>`) a stock count of that store and SKU, recorded before the row, whose counted_at is at or after the till's time (the sale's client_created_at, the void's void_client_created_at, the return's client_created_at) — the count that had already found the goods gone, or back. A sale of POST /v1/sales (source online), one synced without client_created_at, and a void or return without the till's time have none.",
    // The count_correction rows through stock_ledger_count_correction_idx (never the sale and receipt rows); per
    // group, its operation: the sale by its operation (sales_offline_op_idx), the void by voided_by_op
    // (sales_till_void_op_idx), the return by op_id (sale_returns_till_op_idx), each of the till-timed ones
    // alone; that operation's rows of its kind (stock_ledger_op_idx), the count named by the reason (its primary key).
    sql: `
      SELECT r.tenant_id, r.op_id || '/' || r.store_id || '/' || r.sku_id AS subject,
             jsonb_build_object('op_id', r.op_id, 'store_id', r.store_id, 'sku_id', r.sku_id, 'ledger_ids', r.ids, 'quantity_change', r.change,
                                'reason', r.reason, 'operation', o.kind, 'sale_id', o.sale_id, 'return_id', o.return_id, 'till_time', o.till_at,
                                'operation_quantity_change', t.change, 'count_id', c.id, 'counted_at', c.counted_at, 'count_line', coalesce(n.counted, false)) AS detail
      FROM (
        SELECT tenant_id, op_id, store_id, sku_id, count(*) AS rows, sum(quantity_change) AS change, min(reason) AS reason,
               min(created_at) AS created_at, jsonb_agg(id ORDER BY id) AS ids
        FROM stock_ledger WHERE kind = 'count_correction' AND ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, op_id, store_id, sku_id
      ) r
      LEFT JOIN LATERAL (
        SELECT 'sale' AS kind, v.id AS sale_id, NULL::uuid AS return_id, v.client_created_at AS till_at FROM sales v
        WHERE v.tenant_id = r.tenant_id AND v.op_id = r.op_id AND v.store_id = r.store_id AND v.source = 'offline' AND v.client_created_at IS NOT NULL
        UNION ALL
        SELECT 'void', v.id, NULL, v.void_client_created_at FROM sales v
        WHERE v.tenant_id = r.tenant_id AND v.voided_by_op = r.op_id AND v.store_id = r.store_id AND v.void_client_created_at IS NOT NULL
        UNION ALL
        SELECT 'return', x.sale_id, x.id, x.client_created_at FROM sale_returns x
        WHERE x.tenant_id = r.tenant_id AND x.op_id = r.op_id AND x.store_id = r.store_id AND x.client_created_at IS NOT NULL
      ) o ON true
      CROSS JOIN LATERAL (
        SELECT sum(l.quantity_change) AS change FROM stock_ledger l
        WHERE l.tenant_id = r.tenant_id AND l.op_id = r.op_id AND l.store_id = r.store_id AND l.sku_id = r.sku_id AND l.kind = o.kind
      ) t
      LEFT JOIN stock_counts c ON c.tenant_id = r.tenant_id AND c.store_id = r.store_id
        AND c.id = CASE WHEN r.reason ~ '^count [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN substr(r.reason, 7)::uuid END
      CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM stock_count_lines y WHERE y.tenant_id = c.tenant_id AND y.count_id = c.id AND y.sku_id = r.sku_id) AS counted
      ) n
      WHERE r.rows <> 1 OR o.kind IS NULL OR r.change = 0 OR (o.kind = 'sale') <> (r.change > 0) OR t.change IS DISTINCT FROM -r.change
         OR c.id IS NULL OR NOT n.counted OR o.till_at > c.counted_at OR c.created_at > r.created_at`,
  },
  {
    name: 'covered_sale_has_count_correction',
    severity: 'critical',
    description:
      "Every operation a stock count covers has its count_correction row: a sale synced with a client_created_at (source offline), a void with void_client_created_at or a return with client_created_at, whose till time is at or before the counted_at of a count of its store with a line of the SKU, and whose own stock ledger row of the SKU (its sale, void or return row) was written after that count was recorded (the count's held_at, the moment it held the SKU's balance row, before the row's created_at: the operation read the count on the balance row), has a count_correction row of its operation, store and SKU (count_correction_matches_sale holds that row to its operation and count); and a synced sale that took none of a SKU (all of it recorded short: no sale row) is not one such a count covered, judged by the sale's transaction start (sales.created_at) after the count's held_at — a covered sale takes what it sold. One finding per operation, store and SKU, naming the earliest such count. A count recorded before migration 1320 with neither an audit event nor a count ledger row has no held_at and covers nothing here.",
    // From the till-timed operations alone, each through its partial index (sales_offline_op_idx,
    // sales_till_void_op_idx, sale_returns_till_op_idx: operation and till time, read from the index); their rows of
    // their kind (stock_ledger_op_idx); per row, the counts of its store whose counted_at lies between the till's time
    // and the row's stamp (stock_counts_store_counted_idx: a count recorded before the row has counted_at < held_at <
    // the row's created_at, so the range is as long as the till was offline, not the store's history), the count's
    // line of the SKU by its primary key; then, for the rows a count covers alone, the operation's count_correction
    // row (stock_ledger_count_correction_idx). Then the synced sales recorded all short of a SKU, from their offline_sale_shortage review items.
    sql: `
      SELECT q.tenant_id, q.op_id || '/' || q.store_id || '/' || q.sku_id AS subject,
             jsonb_build_object('op_id', q.op_id, 'operation', q.kind, 'store_id', q.store_id, 'sku_id', q.sku_id, 'ledger_id', q.ledger_id,
                                'quantity_change', q.quantity_change, 'recorded_at', q.recorded_at, 'till_time', q.till_at,
                                'count_id', q.count_id, 'counted_at', q.counted_at, 'count_held_at', q.held_at) AS detail
      FROM (
      SELECT o.tenant_id, o.op_id, o.kind, o.till_at, l.store_id, l.sku_id, l.id AS ledger_id, l.quantity_change, l.created_at AS recorded_at,
             c.id AS count_id, c.counted_at, c.held_at
      FROM (
        SELECT tenant_id, 'sale' AS kind, op_id, client_created_at AS till_at FROM sales
        WHERE source = 'offline' AND client_created_at IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1)
        UNION ALL
        SELECT tenant_id, 'void', voided_by_op, void_client_created_at FROM sales
        WHERE void_client_created_at IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1)
        UNION ALL
        SELECT tenant_id, 'return', op_id, client_created_at FROM sale_returns
        WHERE client_created_at IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1)
      ) o
      JOIN stock_ledger l ON l.tenant_id = o.tenant_id AND l.op_id = o.op_id AND l.kind = o.kind
      CROSS JOIN LATERAL (
        SELECT c.id, c.counted_at, c.held_at FROM stock_counts c
        WHERE c.tenant_id = l.tenant_id AND c.store_id = l.store_id
          AND c.counted_at >= o.till_at AND c.counted_at < l.created_at AND c.held_at < l.created_at
          -- OFFSET 0: asked of each count in the window by its primary key, not joined to every line of the SKU
          AND EXISTS (SELECT 1 FROM stock_count_lines y WHERE y.tenant_id = c.tenant_id AND y.count_id = c.id AND y.sku_id = l.sku_id OFFSET 0)
        ORDER BY c.counted_at LIMIT 1
      ) c
      -- OFFSET 0: the correction is looked for only for the rows a count covers (few), not for every row read
      OFFSET 0
      ) q
      WHERE NOT EXISTS (SELECT 1 FROM stock_ledger k
                        WHERE k.kind = 'count_correction' AND k.tenant_id = q.tenant_id AND k.op_id = q.op_id AND k.store_id = q.store_id AND k.sku_id = q.sku_id)
      UNION ALL
      -- A synced sale that took none of a SKU (all of it recorded short, as an uncovered sale finding the shelf empty
      -- does: no sale row, no count_correction row) though a count covered it: a covered sale takes what it sold.
      -- Such a sale opened an offline_sale_shortage review item (sale_shortfall_matches_review_item): read from those,
      -- the sale by its id. Without a row, its moment is its transaction's start (sales.created_at): one begun after
      -- the count held the balance row locked that row after the count's commit, and read the count; one begun
      -- earlier is not judged.
      SELECT v.tenant_id, v.op_id || '/' || v.store_id || '/' || i.sku_id AS subject,
             jsonb_build_object('op_id', v.op_id, 'operation', 'sale', 'store_id', v.store_id, 'sku_id', i.sku_id, 'ledger_id', NULL,
                                'quantity_change', 0, 'shortfall', i.shortfall, 'recorded_at', v.created_at, 'till_time', v.client_created_at,
                                'count_id', c.id, 'counted_at', c.counted_at, 'count_held_at', c.held_at) AS detail
      FROM review_items r
      JOIN sales v ON v.tenant_id = r.tenant_id
        AND v.id = CASE WHEN r.subject_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN r.subject_id::uuid END
        AND v.source = 'offline' AND v.client_created_at IS NOT NULL
      CROSS JOIN LATERAL (
        SELECT x.sku_id, sum(x.shortfall_quantity) AS shortfall FROM sale_items x
        WHERE x.tenant_id = v.tenant_id AND x.sale_id = v.id
        GROUP BY x.sku_id HAVING sum(x.shortfall_quantity) = sum(x.quantity)
      ) i
      CROSS JOIN LATERAL (
        SELECT c.id, c.counted_at, c.held_at FROM stock_counts c
        WHERE c.tenant_id = v.tenant_id AND c.store_id = v.store_id
          AND c.counted_at >= v.client_created_at AND c.counted_at < v.created_at AND c.held_at < v.created_at
          AND EXISTS (SELECT 1 FROM stock_count_lines y WHERE y.tenant_id = c.tenant_id AND y.count_id = c.id AND y.sku_id = i.sku_id OFFSET 0)
        ORDER BY c.counted_at LIMIT 1
      ) c
      WHERE r.kind = 'offline_sale_shortage' AND r.subject_type = 'sale' AND ($1::uuid IS NULL OR r.tenant_id = $1)`,
  },
];
