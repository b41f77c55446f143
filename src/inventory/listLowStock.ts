import { sql } from 'kysely';
import { all, andIf, maybeOne, type Tx } from '../core/db.js';

export interface LowStockRow {
  sku_id: string;
  code: string;
  name: string;
  /** The store's stock of the SKU now (0 without a balance row). */
  quantity: number;
  reorder_level: number;
  /** reorder_level − quantity, ≥ 0. */
  shortfall: number;
}

/**
 * The SKUs of a store whose stock is at or below their reorder level, in
 * sku_id order, after a SKU id: a range of the levels' primary key from the
 * cursor (`AND sku_id > after` only with a cursor, as stockPageStart, so it is
 * a range in a generic plan too), each level joined to its balance and its
 * SKU by their primary keys. The page reads the store's levels from the
 * cursor until it has `limit` low ones: as many as the page when every level
 * is low, more when levels above their stock lie between them (levels only:
 * never the ledger, never another store's rows).
 */
export async function listLowStock(tx: Tx, tenantId: string, storeId: string, after: string | undefined, limit: number): Promise<LowStockRow[]> {
  return all(
    tx,
    sql<LowStockRow>`
      SELECT r.sku_id, s.code, s.name, b.quantity, r.quantity AS reorder_level, r.quantity - b.quantity AS shortfall
      FROM stock_reorder_levels r
      -- each level's balance looked up by its key (a scalar subquery: never turned into a join, which a plan may
      -- make a merge join reading the store's balances from its first SKU, not from the cursor)
      CROSS JOIN LATERAL (
        SELECT coalesce((SELECT x.quantity FROM stock_balances x WHERE x.tenant_id = r.tenant_id AND x.store_id = r.store_id AND x.sku_id = r.sku_id), 0) AS quantity
      ) b
      JOIN skus s ON s.tenant_id = r.tenant_id AND s.id = r.sku_id
      WHERE r.tenant_id = ${tenantId} AND r.store_id = ${storeId} ${andIf(after, (sku) => sql`r.sku_id > ${sku}::uuid`)}
        AND r.quantity IS NOT NULL AND b.quantity <= r.quantity
      ORDER BY r.sku_id LIMIT ${limit}`,
  );
}

/** A store's reorder level of a SKU (null: none). */
export async function findReorderLevel(tx: Tx, tenantId: string, storeId: string, skuId: string): Promise<number | null> {
  const row = await maybeOne(
    tx,
    sql<{ quantity: number | null }>`SELECT quantity FROM stock_reorder_levels WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ${skuId}`,
  );
  return row?.quantity === undefined || row.quantity === null ? null : Number(row.quantity);
}
