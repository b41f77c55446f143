import type { IntegrityCheck } from '../integrity/check.js';

/** Invariants of stock transfers: both sides booked, transit consistent with status. */
export const transferChecks: IntegrityCheck[] = [
  {
    name: 'transfer_in_transit_consistent',
    severity: 'critical',
    description: 'An approved transfer has all its quantity in transit; any other has none; a received one records what arrived.',
    sql: `
      SELECT t.tenant_id, t.id::text AS subject,
             jsonb_build_object('status', t.status, 'sku_id', i.sku_id, 'quantity', i.quantity,
                                'in_transit', i.quantity_in_transit, 'received', i.quantity_received) AS detail
      FROM stock_transfers t
      JOIN stock_transfer_items i ON i.tenant_id = t.tenant_id AND i.transfer_id = t.id
      WHERE ($1::uuid IS NULL OR t.tenant_id = $1)
        AND (i.quantity_in_transit <> CASE WHEN t.status = 'approved' THEN i.quantity ELSE 0 END
             OR (i.quantity_received IS NOT NULL) <> (t.status = 'received'))`,
  },
  {
    name: 'transfer_stock_ledger_matches',
    severity: 'critical',
    description:
      'A transfer moved exactly its quantities: out of the source by its approval (transfer_out) and into the destination by its receipt (transfer_in); a requested or cancelled one moved nothing.',
    sql: `
      SELECT t.tenant_id, t.id::text AS subject,
             jsonb_build_object('status', t.status, 'sku_id', i.sku_id, 'quantity', i.quantity, 'received', i.quantity_received,
                                'out', coalesce(o.moved, 0), 'in', coalesce(n.moved, 0)) AS detail
      FROM stock_transfers t
      JOIN stock_transfer_items i ON i.tenant_id = t.tenant_id AND i.transfer_id = t.id
      LEFT JOIN LATERAL (
        SELECT sum(l.quantity_change) AS moved FROM stock_ledger l
        WHERE l.tenant_id = t.tenant_id AND l.op_id = t.approved_op AND l.store_id = t.source_store_id
          AND l.sku_id = i.sku_id AND l.kind = 'transfer_out'
      ) o ON true
      LEFT JOIN LATERAL (
        SELECT sum(l.quantity_change) AS moved FROM stock_ledger l
        WHERE l.tenant_id = t.tenant_id AND l.op_id = t.received_op AND l.store_id = t.destination_store_id
          AND l.sku_id = i.sku_id AND l.kind = 'transfer_in'
      ) n ON true
      WHERE ($1::uuid IS NULL OR t.tenant_id = $1)
        AND (coalesce(o.moved, 0) <> CASE WHEN t.status IN ('approved', 'received') THEN -i.quantity ELSE 0 END
             OR coalesce(n.moved, 0) <> coalesce(i.quantity_received, 0))
      UNION ALL
      -- Transfer rows that name a transfer but are not its approval's or
      -- receipt's (stock moved for a requested or cancelled transfer, or twice),
      -- or are, but moved what it did not send: another store than its end
      -- (out of the source, into the destination) or a SKU it has no line of —
      -- the per-line sums above never see those: transfer rows only
      -- (stock_ledger_transfer_reason_idx), each one's transfer by its
      -- primary key, the id read out of the reason in any letter case (a row
      -- written before request ids were read lowercased, f0e6f9f, names it
      -- in capitals; compared as text, such a stray row went unseen).
      SELECT t.tenant_id, t.id::text AS subject,
             jsonb_build_object('status', t.status, 'stray_ledger_id', l.id, 'kind', l.kind, 'op_id', l.op_id, 'store_id', l.store_id,
                                'sku_id', l.sku_id, 'quantity_change', l.quantity_change) AS detail
      FROM stock_ledger l
      JOIN stock_transfers t ON t.tenant_id = l.tenant_id
        AND t.id = CASE WHEN l.reason ~ '^transfer [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN substr(l.reason, 10)::uuid END
      WHERE ($1::uuid IS NULL OR l.tenant_id = $1)
        AND l.kind IN ('transfer_out', 'transfer_in')
        AND (l.op_id IS DISTINCT FROM CASE l.kind WHEN 'transfer_out' THEN t.approved_op ELSE t.received_op END
          OR l.store_id <> CASE l.kind WHEN 'transfer_out' THEN t.source_store_id ELSE t.destination_store_id END
          OR NOT EXISTS (SELECT 1 FROM stock_transfer_items i WHERE i.tenant_id = t.tenant_id AND i.transfer_id = t.id AND i.sku_id = l.sku_id))`,
  },
  {
    name: 'transfer_stock_ledger_names_transfer',
    severity: 'critical',
    description:
      "Every stock ledger row of a transfer (transfer_out, transfer_in) names, in its reason (`transfer <id>`), a transfer that exists: stock moved as a transfer that no transfer accounts for is found (transfer_stock_ledger_matches sees only the rows of transfers that exist).",
    // Transfer rows only, through stock_ledger_transfer_reason_idx; each one's
    // transfer by its primary key (the id read out of the reason — every
    // transfer row ever written says `transfer <id>`, the id as its request
    // spelled it: before request UUIDs were read lowercased (f0e6f9f) a
    // transfer approved or received under its id in capitals wrote it so, and
    // a uuid in any letter case names the same transfer).
    sql: `
      SELECT l.tenant_id, 'stock_ledger:' || l.id AS subject,
             jsonb_build_object('ledger_id', l.id, 'store_id', l.store_id, 'sku_id', l.sku_id, 'kind', l.kind, 'reason', l.reason,
                                'op_id', l.op_id, 'quantity_change', l.quantity_change) AS detail
      FROM stock_ledger l
      WHERE ($1::uuid IS NULL OR l.tenant_id = $1)
        AND l.kind IN ('transfer_out', 'transfer_in')
        AND NOT EXISTS (
          SELECT 1 FROM stock_transfers t
          WHERE t.tenant_id = l.tenant_id
            AND t.id = CASE WHEN l.reason ~ '^transfer [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN substr(l.reason, 10)::uuid END)`,
  },
  {
    name: 'transfer_shortfall_matches_review_item',
    severity: 'critical',
    description:
      "A transfer received short (a line's quantity_received below what was sent) has exactly one transfer_shortfall review item, open or resolved, naming it — subject the transfer, filed under its destination (store_id) and its source (other_store_id), opened by its receipt's operation — with the same figures: one `lines` entry per short SKU and none other, `sent`, `received` and `shortfall` as the transfer records them; and every transfer_shortfall item names such a transfer. The item is how the staff of both stores learn that goods left and did not arrive.",
    // A resolution changes only the item's status and resolution columns
    // (kind, subject, detail and op_id are immutable), so a resolved item is
    // held to the same figures. Ids in the item are compared lower-cased (a
    // receipt sent under the transfer's id in capitals, before request ids
    // were read lowercased, wrote it so), SKUs in byte order. Only received
    // transfers with a shortfall, and the items of this kind, are read.
    sql: `
      WITH short AS (
        SELECT t.tenant_id, t.id::text AS subject_id, t.id, t.source_store_id, t.destination_store_id, t.received_op,
               jsonb_agg(jsonb_build_object('sku_id', i.sku_id, 'sent', i.quantity, 'received', i.quantity_received, 'shortfall', i.quantity - i.quantity_received)
                         ORDER BY i.sku_id::text COLLATE "C") FILTER (WHERE i.quantity_received < i.quantity) AS lines
        FROM stock_transfers t
        JOIN stock_transfer_items i ON i.tenant_id = t.tenant_id AND i.transfer_id = t.id
        WHERE ($1::uuid IS NULL OR t.tenant_id = $1) AND t.status = 'received'
        GROUP BY t.tenant_id, t.id
        HAVING bool_or(i.quantity_received < i.quantity)
      ), items AS (
        SELECT r.tenant_id, coalesce(lower(r.subject_id), 'review_item:' || r.id) AS subject_id, r.id, r.status, r.subject_type,
               r.store_id, r.other_store_id, r.op_id, r.detail, named.lines
        FROM review_items r
        CROSS JOIN LATERAL (
          SELECT jsonb_agg(jsonb_build_object('sku_id', lower(e ->> 'sku_id'), 'sent', e -> 'sent', 'received', e -> 'received', 'shortfall', e -> 'shortfall')
                           ORDER BY lower(e ->> 'sku_id') COLLATE "C") AS lines
          FROM jsonb_array_elements(CASE jsonb_typeof(r.detail -> 'lines') WHEN 'array' THEN r.detail -> 'lines' ELSE '[]'::jsonb END) e
        ) named
        WHERE r.kind = 'transfer_shortfall' AND ($1::uuid IS NULL OR r.tenant_id = $1)
      )
      SELECT k.tenant_id, k.subject_id AS subject,
             jsonb_build_object('transfer_id', short.id, 'source_store_id', short.source_store_id, 'destination_store_id', short.destination_store_id,
                                'received_op', short.received_op, 'lines', short.lines, 'review_items', r.review_items) AS detail
      FROM (SELECT tenant_id, subject_id FROM short UNION SELECT tenant_id, subject_id FROM items) k
      LEFT JOIN short ON short.tenant_id = k.tenant_id AND short.subject_id = k.subject_id
      CROSS JOIN LATERAL (
        SELECT count(it.id) AS items,
               count(it.id) FILTER (WHERE it.subject_type = 'stock_transfer' AND it.store_id = short.destination_store_id
                                      AND it.other_store_id = short.source_store_id AND it.op_id = short.received_op
                                      AND lower(it.detail ->> 'transfer_id') = short.id::text
                                      AND lower(it.detail ->> 'source_store_id') = short.source_store_id::text
                                      AND it.lines = short.lines) AS matching,
               coalesce(jsonb_agg(jsonb_build_object('id', it.id, 'status', it.status, 'subject_type', it.subject_type, 'store_id', it.store_id,
                                                     'other_store_id', it.other_store_id, 'op_id', it.op_id, 'transfer_id', it.detail -> 'transfer_id',
                                                     'source_store_id', it.detail -> 'source_store_id', 'lines', it.lines)
                                  ORDER BY it.id) FILTER (WHERE it.id IS NOT NULL), '[]'::jsonb) AS review_items
        FROM items it WHERE it.tenant_id = k.tenant_id AND it.subject_id = k.subject_id
      ) r
      WHERE NOT (r.items = 1 AND r.matching = 1)`,
  },
];
