import { sql } from 'kysely';
import { all, type Tx } from '../core/db.js';

export interface StockLedgerEntry {
  id: number;
  op_id: string;
  kind: string;
  quantity_change: number;
  quantity_after: number;
  reason: string | null;
  created_at: Date;
}

/** The ledger of one store/SKU, newest first, keyset-paginated by id (stock_ledger_balance_idx). */
export async function listStockLedger(tx: Tx, tenantId: string, storeId: string, skuId: string, beforeId: string | undefined, limit: number): Promise<StockLedgerEntry[]> {
  return all(
    tx,
    sql<StockLedgerEntry>`
      SELECT id, op_id, kind, quantity_change, quantity_after, reason, created_at
      FROM stock_ledger
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ${skuId}
        AND (${beforeId ?? null}::bigint IS NULL OR id < ${beforeId ?? null}::bigint)
      ORDER BY id DESC LIMIT ${limit}`,
  );
}
