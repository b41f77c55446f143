import assert from 'node:assert/strict';
import type pg from 'pg';

/**
 * The pieces invariant on the rows, for the workshop race tests: a store's
 * stock of a piece-tracked SKU is the sum of its live pieces (in stock or
 * reserved, not deleted), and its ledger sums to that balance.
 */
export async function assertStockMatchesPieces(admin: pg.Pool, tenantId: string, storeId: string, skuId: string): Promise<void> {
  const { rows } = await admin.query(
    `SELECT (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3)::bigint AS balance,
            (SELECT coalesce(sum(quantity_change), 0) FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3)::bigint AS ledger,
            (SELECT coalesce(sum(quantity), 0) FROM pieces WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3
               AND deleted_by_op IS NULL AND status IN ('in_stock', 'reserved'))::bigint AS live`,
    [tenantId, storeId, skuId],
  );
  const { balance, ledger, live } = rows[0];
  assert.equal(Number(balance), Number(live), 'stock = Σ live pieces');
  assert.equal(Number(ledger), Number(balance), 'ledger = balance');
}
