import { sql } from 'kysely';
import { all, andIf, utcMicros, type Tx } from '../core/db.js';

export interface StockLedgerEntry {
  id: number;
  op_id: string;
  kind: string;
  quantity_change: number;
  quantity_after: number;
  reason: string | null;
  /** Millisecond precision, like every timestamp of the API. */
  created_at: Date;
  /** created_at to the microsecond (UTC, `…T10:00:00.123456Z`): as an `as_of`, it includes this row. */
  created_at_exact: string;
}

/** The ledger of one store/SKU, newest first, keyset-paginated by id (stock_ledger_balance_idx). */
export async function listStockLedger(tx: Tx, tenantId: string, storeId: string, skuId: string, beforeId: string | undefined, limit: number): Promise<StockLedgerEntry[]> {
  return all(
    tx,
    sql<StockLedgerEntry>`
      SELECT id, op_id, kind, quantity_change, quantity_after, reason, created_at,
             ${utcMicros(sql.ref('created_at'))} AS created_at_exact
      FROM stock_ledger
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ${skuId}
        ${andIf(beforeId, (id) => sql`id < ${id}::bigint`)}
      ORDER BY id DESC LIMIT ${limit}`,
  );
}
