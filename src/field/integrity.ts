import { shortageReviewItems, type IntegrityCheck } from '../integrity/check.js';

/** Invariants of field sales (consignments), checked by the integrity runner. */
export const fieldChecks: IntegrityCheck[] = [
  {
    name: 'consignment_visit_completed',
    severity: 'critical',
    description:
      "Every consignment belongs to a visit to its point of sale that was completed by the same operation that created the consignment, and its settlement to a visit to that point of sale completed by the settlement's operation.",
    // Both visits at the consignment's point of sale: goods left at one shop
    // and settled on a visit to another would charge that other shop's
    // customer and take back goods that were never there.
    sql: `
      SELECT c.tenant_id, 'consignment:' || c.id AS subject,
             jsonb_build_object('visit_id', c.visit_id, 'visit_status', v.status, 'consignment_op_id', c.op_id, 'visit_completed_by_op', v.completed_by_op,
                                'point_of_sale_id', c.point_of_sale_id, 'visit_point_of_sale_id', v.point_of_sale_id) AS detail
      FROM consignments c
      JOIN visits v ON v.tenant_id = c.tenant_id AND v.id = c.visit_id
      WHERE ($1::uuid IS NULL OR c.tenant_id = $1)
        AND (v.status <> 'completed' OR v.completed_by_op IS DISTINCT FROM c.op_id OR v.point_of_sale_id <> c.point_of_sale_id)
      UNION ALL
      SELECT s.tenant_id, 'consignment_settlement:' || s.id AS subject,
             jsonb_build_object('visit_id', s.visit_id, 'visit_status', v.status, 'settlement_op_id', s.op_id, 'visit_completed_by_op', v.completed_by_op,
                                'point_of_sale_id', c.point_of_sale_id, 'visit_point_of_sale_id', v.point_of_sale_id) AS detail
      FROM consignment_settlements s
      JOIN consignments c ON c.tenant_id = s.tenant_id AND c.id = s.consignment_id
      JOIN visits v ON v.tenant_id = s.tenant_id AND v.id = s.visit_id
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND (v.status <> 'completed' OR v.completed_by_op IS DISTINCT FROM s.op_id OR v.point_of_sale_id <> c.point_of_sale_id)`,
  },
  {
    name: 'consignment_store_matches_point_of_sale',
    severity: 'critical',
    description:
      "A consignment's store (the store its goods left, and where returned goods go back, its settlement's entry is booked and its revenue credited) is its point of sale's store.",
    // completeVisit writes the point of sale's store (a point of sale never
    // changes store: a trigger forbids it). The checks below follow the
    // consignment's own store_id, so goods taken from another store, with the
    // ledger and balances agreeing, went unreported.
    sql: `
      SELECT c.tenant_id, 'consignment:' || c.id AS subject,
             jsonb_build_object('store_id', c.store_id, 'point_of_sale_id', c.point_of_sale_id, 'point_of_sale_store_id', p.store_id) AS detail
      FROM consignments c
      JOIN points_of_sale p ON p.tenant_id = c.tenant_id AND p.id = c.point_of_sale_id
      WHERE ($1::uuid IS NULL OR c.tenant_id = $1)
        AND c.store_id <> p.store_id`,
  },
  {
    name: 'consignment_stock_matches_ledger',
    severity: 'critical',
    description:
      "The goods on each consignment left the supplying store through the stock ledger (kind consignment_out) in the consignment's operation, SKU by SKU — the quantity left minus any shortfall (goods left on a visit queued offline when the store was short; a completion sent online has none: it is refused when short) — and nothing else left that way.",
    // A line that is all shortfall took nothing: no ledger row is right for it.
    sql: `
      WITH lines AS (
        SELECT l.tenant_id, c.id AS consignment_id, c.op_id, c.store_id, l.sku_id, l.quantity, l.shortfall_quantity,
               l.quantity - l.shortfall_quantity AS taken, v.client_created_at IS NULL AS online
        FROM consignment_lines l JOIN consignments c ON c.tenant_id = l.tenant_id AND c.id = l.consignment_id
        LEFT JOIN visits v ON v.tenant_id = c.tenant_id AND v.id = c.visit_id
        WHERE ($1::uuid IS NULL OR l.tenant_id = $1)
      ), moved AS (
        SELECT s.tenant_id, s.op_id, s.store_id, s.sku_id, -sum(s.quantity_change) AS quantity
        FROM stock_ledger s
        WHERE s.kind = 'consignment_out' AND ($1::uuid IS NULL OR s.tenant_id = $1)
        GROUP BY s.tenant_id, s.op_id, s.store_id, s.sku_id
      )
      SELECT coalesce(lines.tenant_id, moved.tenant_id) AS tenant_id,
             'operation:' || coalesce(lines.op_id, moved.op_id) || '/sku:' || coalesce(lines.sku_id, moved.sku_id) AS subject,
             jsonb_build_object('consignment_id', lines.consignment_id, 'consigned', lines.quantity, 'shortfall', lines.shortfall_quantity,
                                'ledger_out', moved.quantity, 'source', CASE WHEN lines.online THEN 'online' WHEN lines.online IS NOT NULL THEN 'offline' END) AS detail
      FROM lines FULL JOIN moved
        ON moved.tenant_id = lines.tenant_id AND moved.op_id = lines.op_id AND moved.store_id = lines.store_id AND moved.sku_id = lines.sku_id
      WHERE (lines.taken IS DISTINCT FROM moved.quantity AND NOT (lines.taken = 0 AND moved.quantity IS NULL))
         OR (lines.online AND lines.shortfall_quantity <> 0)`,
  },
  {
    name: 'consignment_settlement_matches_ledger',
    severity: 'critical',
    description:
      "A consignment is settled exactly when it has a settlement; returned goods came back through the stock ledger (kind consignment_return) in the settlement's operation.",
    sql: `
      WITH settled AS (
        SELECT c.tenant_id, c.id, c.status, c.settled_by_op, s.id AS settlement_id, s.op_id AS settlement_op
        FROM consignments c LEFT JOIN consignment_settlements s ON s.tenant_id = c.tenant_id AND s.consignment_id = c.id
        WHERE ($1::uuid IS NULL OR c.tenant_id = $1)
      ), returned AS (
        SELECT sl.tenant_id, s.op_id, c.store_id, sl.sku_id, sum(sl.returned_quantity) AS quantity
        FROM consignment_settlement_lines sl
        JOIN consignment_settlements s ON s.tenant_id = sl.tenant_id AND s.id = sl.settlement_id
        JOIN consignments c ON c.tenant_id = s.tenant_id AND c.id = s.consignment_id
        WHERE sl.returned_quantity > 0 AND ($1::uuid IS NULL OR sl.tenant_id = $1)
        GROUP BY sl.tenant_id, s.op_id, c.store_id, sl.sku_id
      ), moved AS (
        SELECT tenant_id, op_id, store_id, sku_id, sum(quantity_change) AS quantity
        FROM stock_ledger WHERE kind = 'consignment_return' AND ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, op_id, store_id, sku_id
      )
      SELECT tenant_id, 'consignment:' || id AS subject,
             jsonb_build_object('status', status, 'settlement_id', settlement_id, 'settled_by_op', settled_by_op, 'settlement_op', settlement_op) AS detail
      FROM settled
      WHERE (status = 'settled') <> (settlement_id IS NOT NULL) OR (settlement_id IS NOT NULL AND settled_by_op IS DISTINCT FROM settlement_op)
      UNION ALL
      SELECT coalesce(r.tenant_id, m.tenant_id), 'operation:' || coalesce(r.op_id, m.op_id) || '/sku:' || coalesce(r.sku_id, m.sku_id),
             jsonb_build_object('returned', r.quantity, 'ledger_in', m.quantity)
      FROM returned r FULL JOIN moved m ON m.tenant_id = r.tenant_id AND m.op_id = r.op_id AND m.store_id = r.store_id AND m.sku_id = r.sku_id
      WHERE r.quantity IS DISTINCT FROM m.quantity`,
  },

  {
    name: 'consignment_settlement_accounts_for_consignment',
    severity: 'critical',
    description:
      "A consignment settlement accounts for exactly what its consignment left, SKU by SKU: one settlement line per consignment line, none for a SKU that was not left, sold + returned = the quantity left, at the unit price agreed when it was left. (The checks above compare a settlement with the ledgers its own lines moved; this one compares its lines with the consignment.)",
    sql: `
      SELECT s.tenant_id, 'consignment_settlement:' || s.id || '/sku:' || l.sku_id AS subject,
             jsonb_build_object('consignment_id', s.consignment_id, 'left', l.left_quantity, 'sold', l.sold_quantity, 'returned', l.returned_quantity,
                                'left_at_price', l.left_price, 'settled_at_price', l.settled_price) AS detail
      FROM consignment_settlements s
      CROSS JOIN LATERAL (
        SELECT coalesce(cl.sku_id, sl.sku_id) AS sku_id, cl.quantity AS left_quantity, cl.unit_price AS left_price,
               sl.sold_quantity, sl.returned_quantity, sl.unit_price AS settled_price
        FROM (SELECT sku_id, quantity, unit_price FROM consignment_lines WHERE tenant_id = s.tenant_id AND consignment_id = s.consignment_id) cl
        FULL JOIN (SELECT sku_id, sold_quantity, returned_quantity, unit_price FROM consignment_settlement_lines WHERE tenant_id = s.tenant_id AND settlement_id = s.id) sl
          ON sl.sku_id = cl.sku_id
      ) l
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND (l.left_quantity IS NULL OR l.sold_quantity IS NULL
             OR l.sold_quantity + l.returned_quantity <> l.left_quantity OR l.settled_price <> l.left_price)`,
  },

  {
    name: 'consignment_settlement_amount_matches_lines',
    severity: 'critical',
    description:
      "A consignment settlement's amount owed is what its lines' sold quantities total at their unit prices, each line as a sale would total it (pieces × price; grams or millimetres × price per kg or metre / 1000, rounded half up).",
    sql: `
      SELECT s.tenant_id, 'consignment_settlement:' || s.id AS subject,
             jsonb_build_object('amount_owed', s.amount_owed, 'lines_total', lines.total) AS detail
      FROM consignment_settlements s
      CROSS JOIN LATERAL (
        SELECT coalesce(sum(CASE k.unit WHEN 'piece' THEN sl.sold_quantity::numeric * sl.unit_price
                                        ELSE floor(sl.sold_quantity::numeric * sl.unit_price / 1000 + 0.5) END), 0) AS total
        FROM consignment_settlement_lines sl JOIN skus k ON k.tenant_id = sl.tenant_id AND k.id = sl.sku_id
        WHERE sl.tenant_id = s.tenant_id AND sl.settlement_id = s.id
      ) lines
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND lines.total <> s.amount_owed`,
  },

  {
    name: 'consignment_settlement_posted',
    severity: 'critical',
    description:
      "The amount owed on each consignment settlement was posted in the settlement's own journal entry (kind consignment_settlement, the settlement as its subject, booked for the consignment's store): debited to the receivable of the point of sale's customer party and credited to the sales revenue of the consignment's store, and nothing else (no cash moves on a settlement).",
    // The party's side alone let the other side land anywhere — the store's
    // cash drawer included, where the next count would expect cash that never came.
    sql: `
      SELECT s.tenant_id, 'consignment_settlement:' || s.id AS subject,
             jsonb_build_object('amount_owed', s.amount_owed, 'posted', posted.to_party, 'to_revenue', posted.to_revenue, 'postings', posted.postings,
                                'journal_entry_id', s.journal_entry_id, 'entry_kind', e.kind, 'entry_subject_id', e.subject_id, 'entry_store_id', e.store_id) AS detail
      FROM consignment_settlements s
      JOIN consignments c ON c.tenant_id = s.tenant_id AND c.id = s.consignment_id
      JOIN points_of_sale p ON p.tenant_id = c.tenant_id AND p.id = c.point_of_sale_id
      LEFT JOIN journal_entries e ON e.tenant_id = s.tenant_id AND e.id = s.journal_entry_id
      LEFT JOIN LATERAL (
        SELECT count(*) AS postings,
               coalesce(sum(po.amount) FILTER (WHERE a.party_id = p.party_id), 0) AS to_party,
               coalesce(sum(po.amount) FILTER (WHERE a.store_id = c.store_id AND a.kind = 'sales_revenue'), 0) AS to_revenue
        FROM postings po JOIN accounts a ON a.tenant_id = po.tenant_id AND a.id = po.account_id
        WHERE po.tenant_id = s.tenant_id AND po.entry_id = s.journal_entry_id
      ) posted ON true
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND (posted.to_party <> s.amount_owed
             OR (s.journal_entry_id IS NOT NULL
                 AND (e.id IS NULL OR e.kind <> 'consignment_settlement' OR e.subject_id IS DISTINCT FROM s.id OR e.store_id IS DISTINCT FROM c.store_id
                      OR posted.postings <> 2 OR posted.to_revenue <> -s.amount_owed)))`,
  },

  {
    name: 'consignment_settlement_conflict_recorded',
    severity: 'critical',
    description:
      "A settlement kept as not recorded (a completion queued offline whose consignment another operation had settled) names that settlement truly: its visit was completed by its own operation, sent with client_created_at, at the consignment's point of sale, with no settlement of its own; the consignment is settled by the operation and settlement it names; its consignment_settled_twice review item was opened by the same operation about that consignment.",
    // Such a row is why a point of sale's reported sales were not billed: if
    // the consignment was in fact open, or settled by this very visit, what
    // was sold would never be owed (or would be owed twice) and no one would look.
    sql: `
      SELECT x.tenant_id, 'consignment_settlement_conflict:' || x.id AS subject,
             jsonb_build_object('visit_id', x.visit_id, 'consignment_id', x.consignment_id, 'op_id', x.op_id,
                                'visit_status', v.status, 'visit_completed_by_op', v.completed_by_op, 'visit_client_created_at', v.client_created_at,
                                'point_of_sale_id', c.point_of_sale_id, 'visit_point_of_sale_id', v.point_of_sale_id,
                                'settled_by_op', x.settled_by_op, 'consignment_status', c.status, 'consignment_settled_by_op', c.settled_by_op,
                                'settlement_id', x.settlement_id, 'recorded_settlement_id', s.id, 'visit_settlement_id', own.id,
                                'review_item_id', x.review_item_id, 'review_item_kind', r.kind, 'review_item_op_id', r.op_id, 'review_item_subject_id', r.subject_id) AS detail
      FROM consignment_settlement_conflicts x
      JOIN visits v ON v.tenant_id = x.tenant_id AND v.id = x.visit_id
      JOIN consignments c ON c.tenant_id = x.tenant_id AND c.id = x.consignment_id
      LEFT JOIN consignment_settlements s ON s.tenant_id = x.tenant_id AND s.consignment_id = x.consignment_id
      LEFT JOIN LATERAL (SELECT o.id FROM consignment_settlements o WHERE o.tenant_id = x.tenant_id AND o.visit_id = x.visit_id LIMIT 1) own ON true
      LEFT JOIN review_items r ON r.tenant_id = x.tenant_id AND r.id = x.review_item_id
      WHERE ($1::uuid IS NULL OR x.tenant_id = $1)
        AND (v.status <> 'completed' OR v.completed_by_op IS DISTINCT FROM x.op_id OR v.client_created_at IS NULL OR v.point_of_sale_id <> c.point_of_sale_id
             OR own.id IS NOT NULL
             OR c.status <> 'settled' OR c.settled_by_op IS DISTINCT FROM x.settled_by_op OR s.id IS DISTINCT FROM x.settlement_id
             OR r.kind IS DISTINCT FROM 'consignment_settled_twice' OR r.op_id IS DISTINCT FROM x.op_id OR r.subject_id IS DISTINCT FROM x.consignment_id::text)`,
  },

  {
    name: 'point_of_sale_last_visit',
    severity: 'warning',
    description:
      "A point of sale's last visit (last_visit_id, last_visit_at) is its latest completed visit by when it happened — the device's time (client_created_at) kept between the visit's scheduling and its arrival, else its arrival (completed_at); ties by visit id — at that time; none while it has no completed visit.",
    // Derived (like a rollup), so a warning: it moves no goods or money, but
    // it is what a manager reads to see which shop was visited last. Nothing
    // else checked it: a completion that set it from the arrival order, or an
    // earlier-started visit committing last, went unreported. The time is
    // recomputed as completeVisit computes it (its now() is completed_at).
    sql: `
      SELECT p.tenant_id, 'point_of_sale:' || p.id AS subject,
             jsonb_build_object('last_visit_id', p.last_visit_id, 'last_visit_at', p.last_visit_at, 'latest_visit_id', latest.id, 'latest_visit_at', latest.at) AS detail
      FROM points_of_sale p
      LEFT JOIN LATERAL (
        SELECT v.id, happened.at
        FROM visits v
        CROSS JOIN LATERAL (
          SELECT CASE WHEN v.client_created_at IS NULL THEN v.completed_at
                      ELSE greatest(v.created_at, least(v.client_created_at, v.completed_at)) END AS at
        ) happened
        WHERE v.tenant_id = p.tenant_id AND v.point_of_sale_id = p.id AND v.status = 'completed'
        ORDER BY happened.at DESC, v.id DESC
        LIMIT 1
      ) latest ON true
      WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
        AND (p.last_visit_id IS DISTINCT FROM latest.id OR p.last_visit_at IS DISTINCT FROM latest.at)`,
  },
  {
    name: 'consignment_shortfall_matches_review_item',
    severity: 'critical',
    description:
      "Every consignment left by a completion queued offline (its visit has client_created_at) whose lines recorded a shortfall has exactly one offline_consignment_shortage review item (open or resolved) naming it — subject the consignment, the consignment's store and operation, its visit and point of sale — with the same figures per SKU (requested = the quantity left, shortfall = the line's shortfall_quantity, available = the difference; one entry per short SKU, none other), and every offline_consignment_shortage item names such a consignment. The item is how a person learns that the store's stock figure is missing goods.",
    // A resolution changes only the item's status and resolution columns
    // (kind, subject, detail and op_id are immutable), so a resolved item is
    // held to the same figures. A shortfall on a consignment left online is
    // consignment_stock_matches_ledger's finding, not this one's. Ids in the
    // detail are compared lower-cased (as a client may send them), SKUs in
    // byte order; returned_not_recorded (a settlement not recorded in the
    // same completion) is consignment_settlement_conflict_recorded's part.
    sql: `
      WITH short AS (
        SELECT c.tenant_id, c.id::text AS subject_id, c.id, c.visit_id, c.point_of_sale_id, c.store_id, c.op_id,
               jsonb_agg(jsonb_build_object('sku_id', l.sku_id, 'requested', l.requested, 'available', l.requested - l.shortfall, 'shortfall', l.shortfall)
                         ORDER BY l.sku_id::text COLLATE "C") FILTER (WHERE l.shortfall > 0) AS shortages
        FROM (
          SELECT tenant_id, consignment_id, sku_id, sum(quantity) AS requested, sum(shortfall_quantity) AS shortfall
          FROM consignment_lines WHERE ($1::uuid IS NULL OR tenant_id = $1)
          GROUP BY tenant_id, consignment_id, sku_id
        ) l
        JOIN consignments c ON c.tenant_id = l.tenant_id AND c.id = l.consignment_id
        JOIN visits v ON v.tenant_id = c.tenant_id AND v.id = c.visit_id
        WHERE v.client_created_at IS NOT NULL
        GROUP BY c.tenant_id, c.id
        HAVING sum(l.shortfall) > 0
      ), items AS (${shortageReviewItems('offline_consignment_shortage')})
      SELECT k.tenant_id, 'consignment:' || k.subject_id AS subject,
             jsonb_build_object('consignment_id', c.id, 'store_id', c.store_id, 'op_id', c.op_id, 'visit_id', c.visit_id, 'point_of_sale_id', c.point_of_sale_id,
                                'shortages', short.shortages, 'review_items', r.review_items) AS detail
      FROM (SELECT tenant_id, subject_id FROM short UNION SELECT tenant_id, subject_id FROM items) k
      LEFT JOIN short ON short.tenant_id = k.tenant_id AND short.subject_id = k.subject_id
      LEFT JOIN consignments c ON c.tenant_id = k.tenant_id AND c.id::text = k.subject_id
      CROSS JOIN LATERAL (
        SELECT count(it.id) AS items,
               count(it.id) FILTER (WHERE it.subject_type = 'consignment' AND it.store_id = short.store_id AND it.op_id = short.op_id
                                      AND lower(it.detail ->> 'consignment_id') = short.id::text AND lower(it.detail ->> 'visit_id') = short.visit_id::text
                                      AND lower(it.detail ->> 'point_of_sale_id') = short.point_of_sale_id::text
                                      AND it.shortages = short.shortages) AS matching,
               coalesce(jsonb_agg(jsonb_build_object('id', it.id, 'status', it.status, 'subject_type', it.subject_type, 'store_id', it.store_id, 'op_id', it.op_id,
                                                     'consignment_id', it.detail -> 'consignment_id', 'visit_id', it.detail -> 'visit_id',
                                                     'point_of_sale_id', it.detail -> 'point_of_sale_id', 'shortages', it.shortages)
                                  ORDER BY it.id) FILTER (WHERE it.id IS NOT NULL), '[]'::jsonb) AS review_items
        FROM items it WHERE it.tenant_id = k.tenant_id AND it.subject_id = k.subject_id
      ) r
      WHERE NOT (r.items = 1 AND r.matching = 1)`,
  },
];
