import assert from 'node:assert/strict';
import type { TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { SALE_LOCK_WAIT_MS } from './groupCommit.js';

/** Given-steps shared by the sales tests: a store, SKUs and stock, through the API. */
export async function givenStore(owner: ApiClient, code: string): Promise<string> {
  const response = await owner.post('/v1/stores', { code, name: `Store ${code}` });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body.id;
}

export async function givenSku(owner: ApiClient, code: string, unit: 'kg' | 'piece' | 'metre' = 'piece', price = 100): Promise<string> {
  const response = await owner.post('/v1/skus', { code, name: `SKU ${code}`, unit, price });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body.id;
}

export async function givenStock(owner: ApiClient, storeId: string, items: Array<{ sku_id: string; quantity: number }>): Promise<void> {
  const response = await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items });
  assert.equal(response.status, 201, JSON.stringify(response.body));
}

export async function givenToken(t: TestApp, owner: ApiClient, role: string, storeIds?: string[]): Promise<ApiClient> {
  const response = await owner.post('/v1/tokens', { name: `${role}-${Math.random().toString(36).slice(2, 8)}`, role, ...(storeIds ? { store_ids: storeIds } : {}) });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return t.client(response.body.token);
}

/**
 * A shop for the sync specs: a tenant (its owner), one store `S1`, milk
 * (a piece at 120) with 100 in stock, and a cashier's token.
 */
export async function givenMilkShop(t: TestApp): Promise<{ owner: ApiClient; cashier: ApiClient; tenantId: string; storeId: string; milk: string }> {
  const { owner, tenantId } = await t.newTenant();
  const storeId = await givenStore(owner, 'S1');
  const milk = await givenSku(owner, 'MILK', 'piece', 120);
  await givenStock(owner, storeId, [{ sku_id: milk, quantity: 100 }]);
  const cashier = await givenToken(t, owner, 'cashier');
  return { owner, cashier, tenantId, storeId, milk };
}

/** Rows of one tenant in every table a sale writes. */
export async function saleRowCounts(t: TestApp, tenantId: string) {
  const { rows } = await t.admin.query(
    `SELECT (SELECT count(*) FROM sales WHERE tenant_id = $1)::int AS sales,
            (SELECT count(*) FROM sale_items WHERE tenant_id = $1)::int AS sale_items,
            (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
            (SELECT coalesce(sum(quantity), 0)::bigint FROM stock_balances WHERE tenant_id = $1) AS stock,
            (SELECT coalesce(sum(last_number), 0)::bigint FROM store_receipt_counters WHERE tenant_id = $1) AS receipt_numbers,
            (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
            (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
            (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
            (SELECT count(*) FROM review_items WHERE tenant_id = $1)::int AS review_items`,
    [tenantId],
  );
  return rows[0] as Record<string, number | string>;
}

/** Stock balance and the sum of its ledger for one store/SKU. */
export async function balanceAndLedger(t: TestApp, tenantId: string, storeId: string, skuId: string): Promise<{ balance: number; ledger: number }> {
  const { rows } = await t.admin.query(
    `SELECT (SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3)::int AS balance,
            (SELECT coalesce(sum(quantity_change), 0) FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3)::int AS ledger`,
    [tenantId, storeId, skuId],
  );
  return rows[0];
}

/** Rows of one tenant in every table a partial return writes (on top of saleRowCounts). */
export async function returnRowCounts(t: TestApp, tenantId: string) {
  const { rows } = await t.admin.query(
    `SELECT (SELECT count(*) FROM sale_returns WHERE tenant_id = $1)::int AS returns,
            (SELECT count(*) FROM sale_return_items WHERE tenant_id = $1)::int AS return_items,
            (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
            (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings,
            (SELECT coalesce(sum(returned_total), 0)::bigint FROM sales WHERE tenant_id = $1) AS returned_total`,
    [tenantId],
  );
  return { ...(await saleRowCounts(t, tenantId)), ...(rows[0] as Record<string, number | string>) };
}

/** The net of a sale's money entries (the sale, its returns, its void) per account key, the store's prefix dropped. */
export async function saleMoney(t: TestApp, tenantId: string, storeId: string, saleId: string): Promise<Record<string, number>> {
  const { rows } = await t.admin.query(
    `SELECT a.key, sum(p.amount)::int AS net
     FROM journal_entries e
     JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
     JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
     WHERE e.tenant_id = $1 AND (e.subject_id = $2 OR e.subject_id IN (SELECT id FROM sale_returns WHERE sale_id = $2))
     GROUP BY a.key ORDER BY a.key`,
    [tenantId, saleId],
  );
  return Object.fromEntries(rows.map((row) => [row.key.replace(`store/${storeId}/`, ''), row.net]));
}

/** The bound a sale (or a void, a return) a held row does not concern is answered within, beside one: the lane's lock wait, plus slack for a busy shared machine. */
export const LANE_ANSWER_BOUND_MS = SALE_LOCK_WAIT_MS + 2_000;

/**
 * Holds a row locked from a connection of its own (as a psql session would)
 * until `release`: `statement` locks exactly one row (FOR UPDATE).
 */
export async function holdLocked(t: TestApp, statement: string, params: unknown[], what = 'the row to hold'): Promise<{ release(): Promise<void> }> {
  const holder = await t.admin.connect();
  await holder.query('BEGIN');
  const locked = await holder.query(statement, params);
  assert.equal(locked.rowCount, 1, `${what} exists`);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await holder.query('ROLLBACK');
      holder.release();
    },
  };
}

/** Every store of the tenant has receipt numbers 1..n without a gap or a repeat, and its counter at n. */
export async function assertGaplessReceipts(t: TestApp, tenantId: string): Promise<void> {
  const { rows } = await t.admin.query(
    `SELECT store_id, count(*)::int AS n, min(receipt_number)::int AS lo, max(receipt_number)::int AS hi, count(DISTINCT receipt_number)::int AS distinct_numbers,
            (SELECT last_number::int FROM store_receipt_counters c WHERE c.tenant_id = s.tenant_id AND c.store_id = s.store_id) AS counter
     FROM sales s WHERE tenant_id = $1 GROUP BY tenant_id, store_id`,
    [tenantId],
  );
  for (const row of rows) assert.deepEqual({ lo: row.lo, hi: row.hi, distinct: row.distinct_numbers, counter: row.counter }, { lo: 1, hi: row.n, distinct: row.n, counter: row.n }, `store ${row.store_id}`);
}
