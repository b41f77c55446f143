import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * Amounts that only grow by addition are bounded (migration 0804) so the
 * service always reads them back exactly; crossing a bound is the request's
 * fault: 422 limit_exceeded, nothing written.
 */
describe('amount limits: 422 limit_exceeded and nothing written', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'LIM', name: 'Limits' })).body;
  });
  after(() => t.close());

  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings`,
        [tenantId],
      )
    ).rows[0];

  it('a receipt that would take a stock balance above 10^15 base units', async () => {
    const sku = (await owner.post('/v1/skus', { code: 'LIM-1', name: 'Grains', unit: 'piece', price: 1 })).body;
    const full = await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: Array.from({ length: 1000 }, () => ({ sku_id: sku.id, quantity: 1_000_000_000_000 })) });
    assert.equal(full.status, 201, JSON.stringify(full.body));
    const before = await counts();
    const over = await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 1 }] });
    assert.equal(over.status, 422, JSON.stringify(over.body));
    assert.equal(over.body.code, 'limit_exceeded');
    assert.deepEqual(await counts(), before);
    const stock = (await owner.get(`/v1/stores/${store.id}/stock`)).body;
    assert.equal(stock.items.find((item: { sku_id: string }) => item.sku_id === sku.id).quantity, 1_000_000_000_000_000);
  });

  it("a payment that would take an account's totals above 9 × 10^15 minor units", async () => {
    const customer = (await owner.post('/v1/parties', { kind: 'customer', code: 'LIM-C', name: 'Big spender' })).body;
    const payment = (amount: number) => owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, direction: 'in', method: 'cash', amount });
    assert.equal((await payment(100)).status, 201);
    // Bring the customer's account to the edge without a million requests: its
    // totals move together with its balance (CHECK balance = debit − credit).
    await t.admin.query(
      `UPDATE accounts SET credit_total = 8999999999999950, balance = debit_total - 8999999999999950 WHERE tenant_id = $1 AND party_id = $2`,
      [tenantId, customer.id],
    );
    const before = await counts();
    const over = await payment(100);
    assert.equal(over.status, 422, JSON.stringify(over.body));
    assert.equal(over.body.code, 'limit_exceeded');
    assert.deepEqual(await counts(), before);
    assert.equal((await payment(50)).status, 201, 'up to the limit is fine');
  });
});
