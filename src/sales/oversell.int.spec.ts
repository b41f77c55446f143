import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { balanceAndLedger, givenSku, givenStock, givenStore } from './testkit.js';

describe('never oversell: 64 concurrent tills over HTTP', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let skuId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'HOT');
    skuId = await givenSku(owner, 'LAST-KILO', 'piece', 100);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 1000 }]);
  });
  after(() => t.close());

  it('stock 1,000, 2,000 one-unit sales from 64 clients → exactly 1,000 succeed, stock 0, ledger = balance, receipts 1..1,000', async () => {
    // When: 64 clients share 2,000 attempts.
    const attempts = Array.from({ length: 2000 }, () => randomUUID());
    const statuses: number[] = [];
    const codes = new Map<string, number>();
    const worker = async () => {
      for (let key = attempts.pop(); key !== undefined; key = attempts.pop()) {
        const response = await owner.post(
          '/v1/sales',
          { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 1, unit_price: 100 }] },
          { idempotencyKey: key },
        );
        statuses.push(response.status);
        if (response.status !== 201) codes.set(response.body.code, (codes.get(response.body.code) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));

    // Then
    assert.equal(statuses.length, 2000);
    assert.equal(statuses.filter((s) => s === 201).length, 1000);
    assert.equal(statuses.filter((s) => s === 409).length, 1000);
    assert.deepEqual([...codes], [['insufficient_stock', 1000]]);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, skuId), { balance: 0, ledger: 0 });
    const { rows } = await t.admin.query(
      `SELECT count(*)::int AS n, min(receipt_number)::int AS lo, max(receipt_number)::int AS hi, count(DISTINCT receipt_number)::int AS distinct_numbers
       FROM sales WHERE tenant_id = $1 AND store_id = $2`,
      [tenantId, storeId],
    );
    assert.deepEqual(rows[0], { n: 1000, lo: 1, hi: 1000, distinct_numbers: 1000 });
    const counter = await t.admin.query(`SELECT last_number::int FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2`, [tenantId, storeId]);
    assert.equal(counter.rows[0].last_number, 1000);
    const ledger = await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND kind = 'sale'`, [tenantId]);
    assert.equal(ledger.rows[0].n, 1000);
    const keys = await t.admin.query(`SELECT count(*)::int AS n FROM idempotency_keys WHERE tenant_id = $1 AND response_status = 201 AND op_id IN (SELECT op_id FROM sales WHERE tenant_id = $1)`, [tenantId]);
    assert.equal(keys.rows[0].n, 1000);
  });
});
