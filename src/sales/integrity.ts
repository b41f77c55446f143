import { VOID_MOMENT_SQL } from './sale.table.js';
import { bookedPastLatestWithoutCount, lineTotalSql, moneyBackSql, reversalEarliest, reversalLatestWithoutCount, shortageReviewItems, type IntegrityCheck } from '../integrity/check.js';

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
          SELECT ${lineTotalSql('k.unit', 'i.quantity', 'i.unit_price')} AS at_price
        ) x
        WHERE ($1::uuid IS NULL OR i.tenant_id = $1) GROUP BY i.tenant_id, i.sale_id
      ) i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND (s.total <> i.sum_of_lines OR i.lines_off <> '[]'::jsonb)`,
  },
  {
    name: 'sale_stock_matches_items',
    severity: 'critical',
    description:
      'Per sale and SKU, the sale\'s ledger rows took exactly the quantity sold minus any offline shortfall (an online sale has none: it is refused when short), its partial returns\' ledger rows (kind return) brought back exactly what their lines took back (a return recorded after the sale\'s void, after_void, none: the void gave it back), and a void\'s ledger rows returned exactly what was left of what the sale took (what it took less what its returns brought back, never below 0: the returns of an offline line that synced short may bring back more than the sale took, up to all it sold); and no stock moved as a sale, a void or a return (ledger kind sale, void or return) except in the store of a sale by its own operation, the one that voided it or one of its returns.',
    // One pass over each table, grouped once. Every operation that may move
    // stock as a sale's (the sale's own, its void's, its returns') is listed
    // with its kind, its sale's store and its sale ("moves": one read of
    // `sales`); the ledger's sale, void and return rows are matched with it
    // by a hash join, and those matching none are the stray rows. The sale's
    // lines and the matched and stray rows then go through ONE grouping, by
    // sale and SKU (a stray row: by its operation, kind, store and SKU). It
    // was five passes: every sale probed the ledger by operation (an index
    // lookup per sale), the sales were read again for the voids, and every
    // ledger row probed `sales` by operation for the stray rows; each its own
    // grouping (bench/RESULTS.md, "checkspeed"). Why matching by kind is the
    // same as the former match of any ledger row of the sale's operations: a
    // row of another kind counted for nothing (each sum counts its own kind
    // only) and made no finding alone. A sale's status and source come with
    // its ledger rows; a line with no ledger row looks its sale up (an index
    // probe, only for those). As before, rows of a sale that does not exist
    // are left to other checks (a line's sale is a foreign key).
    sql: `
      WITH returned_lines AS (
        -- what returns took back from each sale line, summed once: a subquery per sale line (by sale_item_id, which
        -- no index leads with) read every return line of the tenant once per sale line (src/sales/returnPlans.int.spec.ts)
        -- — but not what a return recorded after its sale's void took back (after_void): the void gave it back
        SELECT ri.tenant_id, ri.sale_item_id, sum(ri.quantity) AS quantity
        FROM sale_return_items ri
        WHERE ($1::uuid IS NULL OR ri.tenant_id = $1)
          AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE r.tenant_id = ri.tenant_id AND r.id = ri.return_id AND r.after_void)
        GROUP BY ri.tenant_id, ri.sale_item_id
      ), moves AS (
        -- the operations that move stock for a sale, each with the ledger kind it writes, in the sale's store
        SELECT s.tenant_id, m.op_id, m.kind, s.store_id, s.id AS sale_id, s.status, s.source
        FROM sales s CROSS JOIN LATERAL (VALUES (s.op_id, 'sale'), (s.voided_by_op, 'void')) m (op_id, kind)
        WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND m.op_id IS NOT NULL
        UNION ALL
        SELECT r.tenant_id, r.op_id, 'return', s.store_id, r.sale_id, s.status, s.source
        FROM sale_returns r JOIN sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
        WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
      ), grouped AS (
        SELECT x.tenant_id, x.sale_id, x.sku_id, x.stray_op, x.stray_kind, x.stray_store,
               sum(x.taken) AS taken, sum(x.shortfall) AS shortfall, sum(x.brought_back) AS brought_back,
               sum(x.ledger_taken) AS ledger_taken, sum(x.ledger_returned) AS ledger_returned, sum(x.ledger_brought_back) AS ledger_brought_back,
               max(x.status) AS status, max(x.source) AS source,
               sum(x.stray_change) AS stray_change, jsonb_agg(x.stray_id ORDER BY x.stray_id) FILTER (WHERE x.stray_id IS NOT NULL) AS stray_ids
        FROM (
          -- what each line sold, fell short of and its returns took back
          SELECT i.tenant_id, i.sale_id, i.sku_id, NULL::uuid AS stray_op, NULL::text AS stray_kind, NULL::uuid AS stray_store,
                 i.quantity - i.shortfall_quantity AS taken, i.shortfall_quantity AS shortfall, rl.quantity AS brought_back,
                 NULL::bigint AS ledger_taken, NULL::bigint AS ledger_returned, NULL::bigint AS ledger_brought_back,
                 NULL::text AS status, NULL::text AS source, NULL::bigint AS stray_change, NULL::bigint AS stray_id
          FROM sale_items i
          LEFT JOIN returned_lines rl ON rl.tenant_id = i.tenant_id AND rl.sale_item_id = i.id
          WHERE ($1::uuid IS NULL OR i.tenant_id = $1)
          UNION ALL
          -- each sale, void and return ledger row: for every sale whose operation of that kind wrote it in its
          -- store (one row per such sale), or, when there is none, a stray row
          SELECT l.tenant_id, m.sale_id, l.sku_id,
                 CASE WHEN m.sale_id IS NULL THEN l.op_id END, CASE WHEN m.sale_id IS NULL THEN l.kind END, CASE WHEN m.sale_id IS NULL THEN l.store_id END,
                 NULL, NULL, NULL,
                 CASE WHEN m.kind = 'sale' THEN -l.quantity_change END, CASE WHEN m.kind = 'void' THEN l.quantity_change END,
                 CASE WHEN m.kind = 'return' THEN l.quantity_change END,
                 m.status, m.source, CASE WHEN m.sale_id IS NULL THEN l.quantity_change END, CASE WHEN m.sale_id IS NULL THEN l.id END
          FROM stock_ledger l
          LEFT JOIN moves m ON m.tenant_id = l.tenant_id AND m.op_id = l.op_id AND m.kind = l.kind AND m.store_id = l.store_id
          WHERE ($1::uuid IS NULL OR l.tenant_id = $1) AND l.kind IN ('sale', 'void', 'return')
        ) x
        GROUP BY x.tenant_id, x.sale_id, x.sku_id, x.stray_op, x.stray_kind, x.stray_store
      )
      SELECT p.tenant_id,
             CASE WHEN p.sale_id IS NULL THEN p.stray_op || '/' || p.stray_kind || '/' || p.stray_store || '/' || p.sku_id ELSE p.sale_id || '/' || p.sku_id END AS subject,
             CASE WHEN p.sale_id IS NULL
                  THEN jsonb_build_object('op_id', p.stray_op, 'kind', p.stray_kind, 'store_id', p.stray_store, 'sku_id', p.sku_id,
                                          'quantity_change', p.stray_change, 'ledger_ids', p.stray_ids)
                  ELSE jsonb_build_object('sale_id', p.sale_id, 'sku_id', p.sku_id,
                                          'sold', coalesce(p.taken, 0), 'ledger_taken', coalesce(p.ledger_taken, 0),
                                          'returned_by_returns', coalesce(p.brought_back, 0), 'ledger_returned_by_returns', coalesce(p.ledger_brought_back, 0),
                                          'ledger_returned', coalesce(p.ledger_returned, 0), 'shortfall', coalesce(p.shortfall, 0),
                                          'source', CASE WHEN s.source = 'online' THEN 'online' ELSE 'offline' END) END AS detail
      FROM grouped p
      CROSS JOIN LATERAL (
        -- the sale's status and source: from its ledger rows, else looked up (NULL: no such sale)
        SELECT coalesce(p.status, (SELECT x.status FROM sales x WHERE x.tenant_id = p.tenant_id AND x.id = p.sale_id)) AS status,
               coalesce(p.source, (SELECT x.source FROM sales x WHERE x.tenant_id = p.tenant_id AND x.id = p.sale_id)) AS source
      ) s
      WHERE p.sale_id IS NULL
         OR (s.status IS NOT NULL
             AND (coalesce(p.taken, 0) <> coalesce(p.ledger_taken, 0)
                  OR coalesce(p.ledger_brought_back, 0) <> coalesce(p.brought_back, 0)
                  OR coalesce(p.ledger_returned, 0) <> CASE WHEN s.status = 'voided' THEN greatest(coalesce(p.taken, 0) - coalesce(p.brought_back, 0), 0) ELSE 0 END
                  OR (s.source = 'online' AND coalesce(p.shortfall, 0) <> 0)))`,
  },
  {
    name: 'sale_return_matches_lines',
    severity: 'critical',
    description:
      "Every partial return of a sale is of that sale and its store and has lines, each of one of the sale's lines (its SKU; on a line of workshop pieces it names pieces — on another none —, each one of the sale line's pieces, none named twice nor by two returns of the line, none still sold by the sale, and its quantity is their sum), whose refund is lineTotal(what the line's returns took back through this one) − lineTotal(what they took back before it) and whose refunds sum to the return's refund_total; no line is taken back beyond what it sold (its quantity; a line of workshop pieces: its quantity less its offline shortfall, the pieces missing when it synced, which the sale never sold); the return's ledger rows (kind return, its operation) bring back exactly its lines' quantities per SKU; a return recorded after its sale's void (after_void: the till made it, client_created_at, strictly before the void's moment — its void_client_created_at when a till queued the void, else its voided_at —, and the sale is voided) has no ledger row, no journal entry and adds nothing to returned_total; any other return refunding money has exactly one sale_return journal entry (its operation, the sale's store, booked no earlier than the sale's entry nor than a void's entry may be — the day before the till's day (not before the sale's day) or before the day it was recorded, whichever is earlier — and no later than a void's entry may be: the day after the till's day or the day it was recorded, whichever is earlier — not before the sale's day —, later only past a counted day) moving exactly the refund out of the account the sale's money went to and out of the store's sales revenue, one refunding nothing has none, and no such entry names a return that does not exist; and the sale's returned_total is the sum of the refunds of its returns not recorded after its void.",
    // The line's money, as sale_total_matches_items computes it: pieces
    // exactly, grams or millimetres per 1000 rounded half up (lineTotal).
    sql: `
      WITH item AS (
        SELECT ri.tenant_id, ri.return_id, ri.id, ri.sale_id AS item_sale_id, ri.sku_id, ri.quantity, ri.refund,
               i.sale_id AS line_sale_id, i.sku_id AS line_sku_id, i.quantity AS line_quantity, i.shortfall_quantity,
               -- what a return may take back of the line: all it sold (an offline line that synced short too: the customer
               -- had all of it), of a line of pieces only the pieces the sale sold (not its shortfall, the ones missing)
               i.quantity - CASE WHEN cardinality(i.piece_ids) > 0 THEN i.shortfall_quantity ELSE 0 END AS line_sold,
               k.unit, i.unit_price,
               sum(ri.quantity) OVER (PARTITION BY ri.tenant_id, ri.sale_item_id ORDER BY r.return_number) AS through,
               sum(ri.quantity) OVER (PARTITION BY ri.tenant_id, ri.sale_item_id) AS line_returned,
               ri.piece_ids,
               -- a line of workshop pieces takes back named pieces: each the sale line's, once, no longer sold by the
               -- sale, their sum its quantity; a line without pieces names none
               CASE WHEN cardinality(i.piece_ids) > 0
                    THEN cardinality(ri.piece_ids) = 0 OR rp.named <> rp.distinct_named OR rp.named <> rp.found OR rp.off_line > 0
                         OR rp.still_sold > 0 OR rp.quantity <> ri.quantity
                         OR EXISTS (SELECT 1 FROM sale_return_items o
                                    WHERE o.tenant_id = ri.tenant_id AND o.sale_id = ri.sale_id AND o.sale_item_id = ri.sale_item_id
                                      AND o.id <> ri.id AND o.piece_ids && ri.piece_ids)
                    ELSE cardinality(ri.piece_ids) > 0 END AS pieces_off
        FROM sale_return_items ri
        JOIN sale_returns r ON r.tenant_id = ri.tenant_id AND r.id = ri.return_id
        JOIN sale_items i ON i.tenant_id = ri.tenant_id AND i.id = ri.sale_item_id
        JOIN sales sl ON sl.tenant_id = i.tenant_id AND sl.id = i.sale_id
        JOIN skus k ON k.tenant_id = i.tenant_id AND k.id = i.sku_id
        CROSS JOIN LATERAL (
          SELECT count(*) AS named, count(DISTINCT x.id) AS distinct_named, count(p.id) AS found, coalesce(sum(p.quantity), 0) AS quantity,
                 count(*) FILTER (WHERE NOT (x.id = ANY (i.piece_ids))) AS off_line, count(*) FILTER (WHERE p.sold_by_op = sl.op_id) AS still_sold
          FROM unnest(ri.piece_ids) AS x (id)
          LEFT JOIN pieces p ON p.tenant_id = ri.tenant_id AND p.id = x.id
        ) rp
        WHERE ($1::uuid IS NULL OR ri.tenant_id = $1)
      ), priced AS (
        SELECT item.*,
               ${moneyBackSql('unit', 'through', 'quantity', 'unit_price')} AS at_price
        FROM item
      ), lines AS (
        SELECT tenant_id, return_id, count(*) AS lines, sum(refund) AS refunds,
               coalesce(jsonb_agg(jsonb_build_object('id', id, 'sku_id', sku_id, 'quantity', quantity, 'refund', refund, 'at_price', at_price,
                                                     'line_returned', line_returned, 'line_quantity', line_quantity, 'shortfall', shortfall_quantity,
                                                     'piece_ids', piece_ids, 'pieces_off', pieces_off))
                          FILTER (WHERE refund <> at_price OR item_sale_id IS DISTINCT FROM line_sale_id OR sku_id IS DISTINCT FROM line_sku_id
                                        OR pieces_off OR line_returned > line_sold), '[]'::jsonb) AS lines_off,
               bool_or(item_sale_id IS DISTINCT FROM line_sale_id) AS other_sale
        FROM priced GROUP BY tenant_id, return_id
      ), per_sku AS (
        -- what the return's ledger rows must bring back: its lines, or nothing for one recorded after the void
        SELECT ri.tenant_id, ri.return_id, ri.sku_id, sum(ri.quantity) AS quantity FROM sale_return_items ri
        WHERE ($1::uuid IS NULL OR ri.tenant_id = $1)
          AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE r.tenant_id = ri.tenant_id AND r.id = ri.return_id AND r.after_void)
        GROUP BY ri.tenant_id, ri.return_id, ri.sku_id
      ), stock_off AS (
        SELECT coalesce(q.tenant_id, m.tenant_id) AS tenant_id, coalesce(q.return_id, m.return_id) AS return_id,
               jsonb_agg(jsonb_build_object('sku_id', coalesce(q.sku_id, m.sku_id), 'lines', coalesce(q.quantity, 0), 'ledger', coalesce(m.quantity, 0))) AS skus
        FROM per_sku q
        FULL JOIN (
          SELECT r.tenant_id, r.id AS return_id, l.sku_id, sum(l.quantity_change) AS quantity
          FROM sale_returns r
          JOIN stock_ledger l ON l.tenant_id = r.tenant_id AND l.op_id = r.op_id AND l.kind = 'return' AND l.store_id = r.store_id
          WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
          GROUP BY r.tenant_id, r.id, l.sku_id
        ) m ON m.tenant_id = q.tenant_id AND m.return_id = q.return_id AND m.sku_id = q.sku_id
        WHERE coalesce(q.quantity, 0) <> coalesce(m.quantity, 0)
        GROUP BY 1, 2
      ), entries AS (
        SELECT e.tenant_id, e.subject_id AS return_id, count(DISTINCT e.id) AS entries,
               -- by the return's operation, for the sale's store, not before the sale's own entry's day, and
               -- between the earliest and the latest day a void's entry may be booked on (the same rule: the
               -- till's day or the day the return was recorded, past it only after a counted day)
               bool_and(e.op_id = r.op_id AND e.store_id IS NOT DISTINCT FROM s.store_id AND e.business_date >= sd.sale_day
                        AND e.business_date >= sd.earliest
                        AND NOT ${bookedPastLatestWithoutCount('e.tenant_id', 's.store_id', 'e.business_date', 'sd.latest_uncounted')}) AS own,
               max(e.business_date) AS business_date, max(sd.earliest) AS earliest, max(sd.latest_uncounted) AS latest_without_count,
               count(p.*) AS postings,
               coalesce(sum(p.amount) FILTER (WHERE CASE s.payment_method WHEN 'credit' THEN a.party_id = s.customer_id
                                                 ELSE a.store_id = s.store_id AND a.kind = CASE s.payment_method WHEN 'cash' THEN 'cash_drawer'
                                                   WHEN 'card' THEN 'card_clearing' WHEN 'mobile' THEN 'mobile_clearing' END END), 0) AS to_debit_account,
               coalesce(sum(p.amount) FILTER (WHERE a.store_id = s.store_id AND a.kind = 'sales_revenue'), 0) AS to_revenue
        FROM journal_entries e
        JOIN sale_returns r ON r.tenant_id = e.tenant_id AND r.id = e.subject_id
        JOIN sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
        CROSS JOIN LATERAL (
          SELECT sale.sale_day,
                 ${reversalEarliest("(r.client_created_at AT TIME ZONE 'UTC')::date", 'sale.sale_day', "(r.created_at AT TIME ZONE 'UTC')::date")} AS earliest,
                 ${reversalLatestWithoutCount("(r.client_created_at AT TIME ZONE 'UTC')::date", 'sale.sale_day', "(r.created_at AT TIME ZONE 'UTC')::date")} AS latest_uncounted
          FROM (SELECT min(se.business_date) AS sale_day FROM journal_entries se
                WHERE se.tenant_id = s.tenant_id AND se.subject_id = s.id AND se.kind = 'sale') sale
        ) sd
        LEFT JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
        LEFT JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
        WHERE e.kind = 'sale_return' AND ($1::uuid IS NULL OR e.tenant_id = $1)
        GROUP BY e.tenant_id, e.subject_id
      ), per_sale AS (
        SELECT tenant_id, sale_id, coalesce(sum(refund_total) FILTER (WHERE NOT after_void), 0) AS refunds
        FROM sale_returns WHERE ($1::uuid IS NULL OR tenant_id = $1) GROUP BY tenant_id, sale_id
      )
      SELECT r.tenant_id, r.id::text AS subject,
             jsonb_build_object('return_id', r.id, 'sale_id', r.sale_id, 'store_id', r.store_id, 'sale_store_id', s.store_id,
                                'refund_total', r.refund_total, 'lines', coalesce(l.lines, 0), 'line_refunds', coalesce(l.refunds, 0), 'lines_off', coalesce(l.lines_off, '[]'::jsonb),
                                'stock_off', coalesce(so.skus, '[]'::jsonb), 'entries', coalesce(e.entries, 0), 'entry_by_return', coalesce(e.own, true),
                                'entry_business_date', e.business_date, 'entry_earliest', e.earliest, 'entry_latest_without_count', e.latest_without_count,
                                'postings', coalesce(e.postings, 0), 'to_debit_account', coalesce(e.to_debit_account, 0), 'to_revenue', coalesce(e.to_revenue, 0),
                                'sale_returned_total', s.returned_total, 'sale_refunds', ps.refunds,
                                'after_void', r.after_void, 'client_created_at', r.client_created_at, 'sale_status', s.status, 'void_moment', ${VOID_MOMENT_SQL}) AS detail
      FROM sale_returns r
      JOIN sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
      JOIN per_sale ps ON ps.tenant_id = r.tenant_id AND ps.sale_id = r.sale_id
      LEFT JOIN lines l ON l.tenant_id = r.tenant_id AND l.return_id = r.id
      LEFT JOIN stock_off so ON so.tenant_id = r.tenant_id AND so.return_id = r.id
      LEFT JOIN entries e ON e.tenant_id = r.tenant_id AND e.return_id = r.id
      WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
        AND (r.store_id <> s.store_id
             OR coalesce(l.lines, 0) = 0 OR l.refunds <> r.refund_total OR l.lines_off <> '[]'::jsonb
             OR so.return_id IS NOT NULL
             OR coalesce(e.entries, 0) <> CASE WHEN r.refund_total > 0 AND NOT r.after_void THEN 1 ELSE 0 END
             OR NOT coalesce(e.own, true)
             OR (r.refund_total > 0 AND NOT r.after_void AND (e.postings <> 2 OR e.to_debit_account <> -r.refund_total OR e.to_revenue <> r.refund_total))
             OR s.returned_total <> ps.refunds
             -- recorded after the void: of a voided sale, made by the till strictly before the void's moment
             OR (r.after_void AND NOT coalesce(s.status = 'voided' AND r.client_created_at < ${VOID_MOMENT_SQL}, false)))
      UNION ALL
      -- a sale that says its returns took money back, with no returns
      SELECT s.tenant_id, s.id::text, jsonb_build_object('sale_id', s.id, 'sale_returned_total', s.returned_total, 'returns', 0)
      FROM sales s
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND s.returned_total <> 0
        AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE r.tenant_id = s.tenant_id AND r.sale_id = s.id)
      UNION ALL
      -- a sale_return entry naming no return
      SELECT e.tenant_id, e.id::text, jsonb_build_object('entry_id', e.id, 'subject_id', e.subject_id, 'return_exists', false)
      FROM journal_entries e
      WHERE e.kind = 'sale_return' AND ($1::uuid IS NULL OR e.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE r.tenant_id = e.tenant_id AND r.id = e.subject_id)`,
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
  {
    name: 'sale_return_after_void_matches_review_item',
    severity: 'critical',
    description:
      "Every return recorded after its sale's void (after_void: the till took the goods back and handed out the refund before the void, and sent it after) has exactly one sale_return_after_void review item (open or resolved) naming it — subject the return (subject_type sale_return), the sale's store, the return's operation, its sale_id, return_id and refund_total — and every sale_return_after_void item names such a return. The item is how a person learns that a till's cash is short of a refund the books do not hold (the void had already reversed the sale's money).",
    // A resolution changes only the item's status and resolution columns (kind, subject, detail, op_id are
    // immutable), so a resolved item is held to the same figures. Ids in the detail compared lower-cased.
    sql: `
      WITH returns AS (
        SELECT r.tenant_id, r.id::text AS subject_id, r.id, r.sale_id, r.op_id, r.refund_total, s.store_id
        FROM sale_returns r JOIN sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
        WHERE r.after_void AND ($1::uuid IS NULL OR r.tenant_id = $1)
      ), items AS (
        SELECT it.tenant_id, coalesce(it.subject_id, 'review_item:' || it.id) AS subject_id, it.id, it.status, it.subject_type, it.store_id, it.op_id, it.detail
        FROM review_items it
        WHERE it.kind = 'sale_return_after_void' AND ($1::uuid IS NULL OR it.tenant_id = $1)
      )
      SELECT k.tenant_id, k.subject_id AS subject,
             jsonb_build_object('return_id', x.id, 'sale_id', x.sale_id, 'store_id', x.store_id, 'op_id', x.op_id, 'refund_total', x.refund_total,
                                'review_items', m.review_items) AS detail
      FROM (SELECT tenant_id, subject_id FROM returns UNION SELECT tenant_id, subject_id FROM items) k
      LEFT JOIN returns x ON x.tenant_id = k.tenant_id AND x.subject_id = k.subject_id
      CROSS JOIN LATERAL (
        SELECT count(it.id) AS items,
               count(it.id) FILTER (WHERE it.subject_type = 'sale_return' AND it.store_id = x.store_id AND it.op_id = x.op_id
                                      AND lower(it.detail ->> 'return_id') = x.id::text AND lower(it.detail ->> 'sale_id') = x.sale_id::text
                                      AND it.detail -> 'refund_total' = to_jsonb(x.refund_total)) AS matching,
               coalesce(jsonb_agg(jsonb_build_object('id', it.id, 'status', it.status, 'subject_type', it.subject_type, 'store_id', it.store_id, 'op_id', it.op_id,
                                                     'return_id', it.detail -> 'return_id', 'sale_id', it.detail -> 'sale_id', 'refund_total', it.detail -> 'refund_total')
                                  ORDER BY it.id) FILTER (WHERE it.id IS NOT NULL), '[]'::jsonb) AS review_items
        FROM items it WHERE it.tenant_id = k.tenant_id AND it.subject_id = k.subject_id
      ) m
      WHERE NOT (x.id IS NOT NULL AND m.items = 1 AND m.matching = 1)`,
  },
];
