import { sql } from 'kysely';
import { maybeOne, type Tx } from '../core/db.js';
import type { SaleView } from './sale.table.js';

/** A timestamptz inside JSON as the API writes every moment (Date.toISOString: UTC, milliseconds), or null. */
const JSON_TIME = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * A return as the API shows it (a row of sale_returns aliased `r`), its lines
 * in line order. Timestamps as PostgreSQL writes them in JSON (JSON_TIME).
 */
export const RETURN_JSON = sql`jsonb_build_object(
  'id', r.id, 'op_id', r.op_id, 'sale_id', r.sale_id, 'return_number', r.return_number, 'reason', r.reason, 'refund_total', r.refund_total,
  'client_created_at', ${sql.raw(JSON_TIME('r.client_created_at'))}, 'created_at', ${sql.raw(JSON_TIME('r.created_at'))},
  'lines', (SELECT jsonb_agg(jsonb_build_object('sale_item_id', ri.sale_item_id, 'line_number', si.line_number, 'sku_id', ri.sku_id,
                                                'quantity', ri.quantity, 'refund', ri.refund, 'piece_ids', ri.piece_ids) ORDER BY si.line_number)
            FROM sale_return_items ri JOIN sale_items si ON si.tenant_id = ri.tenant_id AND si.id = ri.sale_item_id
            WHERE ri.tenant_id = r.tenant_id AND ri.return_id = r.id))`;

const saleQuery = (tenantId: string, saleId: string, lock: boolean) => sql<SaleView>`
  SELECT s.id, s.op_id, s.store_id, s.receipt_number, s.status, s.payment_method, s.sale_type, s.source, s.customer_id,
         s.total, s.client_created_at, s.created_at, s.voided_at, s.voided_by_op, s.void_reason, s.void_client_created_at,
         (SELECT jsonb_agg(jsonb_build_object(
                   'id', i.id, 'line_number', i.line_number, 'sku_id', i.sku_id, 'quantity', i.quantity,
                   'unit_price', i.unit_price, 'line_total', i.line_total, 'shortfall_quantity', i.shortfall_quantity,
                   'piece_ids', i.piece_ids)
                 ORDER BY i.line_number)
          FROM sale_items i WHERE i.tenant_id = s.tenant_id AND i.sale_id = s.id) AS items,
         s.returned_total,
         (SELECT coalesce(jsonb_agg(${RETURN_JSON} ORDER BY r.return_number), '[]'::jsonb)
          FROM sale_returns r WHERE r.tenant_id = s.tenant_id AND r.sale_id = s.id) AS returns
  FROM sales s
  WHERE s.tenant_id = ${tenantId} AND s.id = ${saleId}
  ${lock ? sql`FOR UPDATE OF s` : sql``}`;

export async function findSale(tx: Tx, tenantId: string, saleId: string): Promise<SaleView | undefined> {
  return maybeOne(tx, saleQuery(tenantId, saleId, false));
}

/** The sale with its row locked until the transaction ends (void takes this lock first). */
export async function lockSaleForUpdate(tx: Tx, tenantId: string, saleId: string): Promise<SaleView | undefined> {
  return maybeOne(tx, saleQuery(tenantId, saleId, true));
}

/** Where a sale belongs (for scope checks and to pick its group-commit lane). */
export async function findSaleStore(tx: Tx, tenantId: string, saleId: string): Promise<string | undefined> {
  return (await maybeOne(tx, sql<{ store_id: string }>`SELECT store_id FROM sales WHERE tenant_id = ${tenantId} AND id = ${saleId}`))?.store_id;
}
