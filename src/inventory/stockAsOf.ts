import { sql } from 'kysely';
import { all, type Tx } from '../core/db.js';

/**
 * Stock of every SKU of a store at a moment: the pair's latest daily snapshot
 * that ended at or before `asOf`, plus the ledger rows from the end of that
 * day up to `asOf` (inclusive). Both are index lookups
 * (stock_snapshots primary key, stock_ledger_history_idx), so the cost depends
 * on the rows since the last snapshot, not on the size of the ledger. A pair
 * without any snapshot yet is summed from its first ledger row.
 */
export async function stockAsOf(tx: Tx, tenantId: string, storeId: string, asOf: Date): Promise<Array<{ sku_id: string; quantity: number }>> {
  return all(
    tx,
    sql<{ sku_id: string; quantity: number }>`
      SELECT b.sku_id,
             (coalesce(s.quantity, 0) + coalesce(delta.change, 0))::bigint AS quantity
      FROM stock_balances b
      LEFT JOIN LATERAL (
        SELECT quantity, (snapshot_date + 1)::timestamp AT TIME ZONE 'UTC' AS ended_at
        FROM stock_snapshots
        WHERE tenant_id = b.tenant_id AND store_id = b.store_id AND sku_id = b.sku_id
          AND snapshot_date <= ((${asOf}::timestamptz AT TIME ZONE 'UTC')::date - 1)
        ORDER BY snapshot_date DESC LIMIT 1
      ) s ON true
      LEFT JOIN LATERAL (
        SELECT sum(l.quantity_change) AS change
        FROM stock_ledger l
        WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id
          AND l.created_at >= coalesce(s.ended_at, '-infinity') AND l.created_at <= ${asOf}::timestamptz
      ) delta ON true
      WHERE b.tenant_id = ${tenantId} AND b.store_id = ${storeId}
      ORDER BY b.sku_id`,
  );
}
