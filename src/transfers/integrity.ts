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
];
