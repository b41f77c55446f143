import { sql } from 'kysely';
import { all, andIf, maybeOne, utcMicros, type Tx } from '../core/db.js';
import type { SaleView } from './sale.table.js';

/** A timestamptz inside JSON as the API writes every moment (Date.toISOString: UTC, milliseconds), or null. */
const JSON_TIME = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * A return as the API shows it (a row of sale_returns aliased `r`), its lines
 * in line order. Timestamps as PostgreSQL writes them in JSON (JSON_TIME).
 */
export const RETURN_JSON = sql`jsonb_build_object(
  'id', r.id, 'op_id', r.op_id, 'sale_id', r.sale_id, 'return_number', r.return_number, 'reason', r.reason, 'refund_total', r.refund_total,
  'client_created_at', ${sql.raw(JSON_TIME('r.client_created_at'))}, 'created_at', ${sql.raw(JSON_TIME('r.created_at'))}, 'after_void', r.after_void,
  'lines', (SELECT jsonb_agg(jsonb_build_object('sale_item_id', ri.sale_item_id, 'line_number', si.line_number, 'sku_id', ri.sku_id,
                                                'quantity', ri.quantity, 'refund', ri.refund, 'piece_ids', ri.piece_ids) ORDER BY si.line_number)
            FROM sale_return_items ri JOIN sale_items si ON si.tenant_id = ri.tenant_id AND si.id = ri.sale_item_id
            WHERE ri.tenant_id = r.tenant_id AND ri.return_id = r.id))`;

/** A sale as the API shows it (a row of sales aliased `s`): its lines, returned_total and returns. */
const SALE_COLUMNS = sql`s.id, s.op_id, s.store_id, s.receipt_number, s.status, s.payment_method, s.sale_type, s.source, s.customer_id,
         s.total, s.client_created_at, s.created_at, s.voided_at, s.voided_by_op, s.void_reason, s.void_client_created_at,
         (SELECT jsonb_agg(jsonb_build_object(
                   'id', i.id, 'line_number', i.line_number, 'sku_id', i.sku_id, 'quantity', i.quantity,
                   'unit_price', i.unit_price, 'line_total', i.line_total, 'shortfall_quantity', i.shortfall_quantity,
                   'piece_ids', i.piece_ids)
                 ORDER BY i.line_number)
          FROM sale_items i WHERE i.tenant_id = s.tenant_id AND i.sale_id = s.id) AS items,
         s.returned_total,
         (SELECT coalesce(jsonb_agg(${RETURN_JSON} ORDER BY r.return_number), '[]'::jsonb)
          FROM sale_returns r WHERE r.tenant_id = s.tenant_id AND r.sale_id = s.id) AS returns`;

const saleQuery = (tenantId: string, saleId: string, lock: boolean) => sql<SaleView>`
  SELECT ${SALE_COLUMNS}
  FROM sales s
  WHERE s.tenant_id = ${tenantId} AND s.id = ${saleId}
  ${lock ? sql`FOR UPDATE OF s` : sql``}`;

/** Where a page of a store's sales list starts after: the last sale's created_at to the microsecond (utcMicros) and receipt number. */
export interface SaleListPosition {
  created_at: string;
  receipt_number: number;
}

/**
 * What a store's sales list is narrowed to: one receipt number, recorded at
 * or after `from`, before `to` (RFC 3339), completed or voided, of one
 * customer (a party id; one with no sale here lists nothing).
 */
export interface SaleListFilter {
  receiptNumber?: number | undefined;
  from?: string | undefined;
  to?: string | undefined;
  status?: 'completed' | 'voided' | undefined;
  customerId?: string | undefined;
}

/**
 * A store's sales, newest first: by when they were recorded (created_at — a
 * synced sale when it arrived), then receipt number, each as GET
 * /v1/sales/{id} answers it, plus `position` (its created_at to the
 * microsecond, for the next page's cursor). A range of the index on
 * (tenant, store, created_at) whatever the store's history; sales recorded
 * by one transaction share a created_at and are ordered by receipt number.
 * The voided ones, and a customer's, are ranges of partial indexes of their
 * own (migration 1360), also in a generic plan: the status is written into
 * the statement as a literal (a parameter would not match the partial
 * index's `status = 'voided'`), the customer `customer_id = $n` implies the
 * other's `customer_id IS NOT NULL`.
 */
export async function listSales(
  tx: Tx,
  tenantId: string,
  storeId: string,
  filter: SaleListFilter,
  after: SaleListPosition | undefined,
  limit: number,
): Promise<Array<SaleView & { position: string }>> {
  return all(
    tx,
    sql<SaleView & { position: string }>`
      SELECT ${SALE_COLUMNS}, ${utcMicros(sql.ref('s.created_at'))} AS position
      FROM sales s
      WHERE s.tenant_id = ${tenantId} AND s.store_id = ${storeId}
        ${andIf(filter.receiptNumber, (number) => sql`s.receipt_number = ${number}::bigint`)}
        ${andIf(filter.from, (from) => sql`s.created_at >= ${from}::timestamptz`)}
        ${andIf(filter.to, (to) => sql`s.created_at < ${to}::timestamptz`)}
        ${andIf(filter.status, (status) => sql`s.status = ${sql.lit(status === 'voided' ? 'voided' : 'completed')}`)}
        ${andIf(filter.customerId, (customerId) => sql`s.customer_id = ${customerId}::uuid`)}
        ${andIf(after, (position) => sql`(s.created_at, s.receipt_number) < (${position.created_at}::timestamptz, ${position.receipt_number}::bigint)`)}
      ORDER BY s.created_at DESC, s.receipt_number DESC
      LIMIT ${limit}`,
  );
}

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
