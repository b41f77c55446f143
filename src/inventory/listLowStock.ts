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
      SELECT r.sku_id, s.code, s.name, coalesce(b.quantity, 0) AS quantity, r.quantity AS reorder_level, r.quantity - coalesce(b.quantity, 0) AS shortfall
      FROM stock_reorder_levels r
      JOIN skus s ON s.tenant_id = r.tenant_id AND s.id = r.sku_id
      LEFT JOIN stock_balances b ON b.tenant_id = r.tenant_id AND b.store_id = r.store_id AND b.sku_id = r.sku_id
      WHERE r.tenant_id = ${tenantId} AND r.store_id = ${storeId} ${andIf(after, (sku) => sql`r.sku_id > ${sku}::uuid`)}
        AND r.quantity IS NOT NULL AND coalesce(b.quantity, 0) <= r.quantity
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
