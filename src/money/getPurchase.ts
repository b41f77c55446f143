import { sql } from 'kysely';
import { maybeOne, type Tx } from '../core/db.js';
import type { PurchaseReturnView } from './returnToSupplier.js';

/** A timestamptz inside JSON as the API writes every moment (Date.toISOString: UTC, milliseconds), or null. */
const jsonTime = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** GET /v1/purchases/{id}: the purchase, its lines with what was sent back of each, and its returns to the supplier. */
export interface PurchaseDetail {
  id: string;
  op_id: string;
  store_id: string;
  supplier_id: string;
  total: number;
  entry_id: string | null;
  business_date: string | null;
  reference: string | null;
  created_at: Date;
  returned_total: number;
  lines: Array<{ line_number: number; sku_id: string; quantity: number; unit_cost: number; line_total: number; returned_quantity: number }>;
  returns: PurchaseReturnView[];
}

/**
 * A purchase as the API shows it, or undefined: its lines in line order
 * (each with `returned_quantity`, what its returns sent back so far), its
 * returns oldest first (each with its lines and its entry's day). Read by
 * the purchase (purchase_return_lines_purchase_idx, the returns' unique
 * (purchase_id, return_number) index).
 */
export async function findPurchase(tx: Tx, tenantId: string, purchaseId: string): Promise<PurchaseDetail | undefined> {
  return maybeOne(
    tx,
    sql<PurchaseDetail>`
      SELECT p.id, p.op_id, p.store_id, p.supplier_id, p.total, p.entry_id,
             (SELECT e.business_date::text FROM journal_entries e WHERE e.tenant_id = p.tenant_id AND e.id = p.entry_id) AS business_date,
             p.reference, p.created_at, p.returned_total,
             (SELECT jsonb_agg(jsonb_build_object(
                       'line_number', l.line_number, 'sku_id', l.sku_id, 'quantity', l.quantity, 'unit_cost', l.unit_cost, 'line_total', l.line_total,
                       'returned_quantity', coalesce((SELECT sum(rl.quantity) FROM purchase_return_lines rl
                                                      WHERE rl.tenant_id = l.tenant_id AND rl.purchase_id = l.purchase_id AND rl.line_number = l.line_number), 0))
                     ORDER BY l.line_number)
              FROM purchase_lines l WHERE l.tenant_id = p.tenant_id AND l.purchase_id = p.id) AS lines,
             (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', r.id, 'op_id', r.op_id, 'purchase_id', r.purchase_id, 'store_id', r.store_id, 'supplier_id', r.supplier_id,
                       'return_number', r.return_number, 'reason', r.reason, 'reference', r.reference, 'credit_total', r.credit_total,
                       'entry_id', r.entry_id,
                       'business_date', (SELECT e.business_date::text FROM journal_entries e WHERE e.tenant_id = r.tenant_id AND e.id = r.entry_id),
                       'created_at', ${sql.raw(jsonTime('r.created_at'))},
                       'lines', (SELECT jsonb_agg(jsonb_build_object('line_number', rl.line_number, 'sku_id', rl.sku_id, 'quantity', rl.quantity,
                                                                     'unit_cost', rl.unit_cost, 'line_total', rl.line_total) ORDER BY rl.line_number)
                                 FROM purchase_return_lines rl WHERE rl.tenant_id = r.tenant_id AND rl.return_id = r.id))
                     ORDER BY r.return_number), '[]'::jsonb)
              FROM purchase_returns r WHERE r.tenant_id = p.tenant_id AND r.purchase_id = p.id) AS returns
      FROM purchases p
      WHERE p.tenant_id = ${tenantId} AND p.id = ${purchaseId}`,
  );
}
