import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { allChecks } from './registry.js';
import { runChecksAsOwner, runChecksForTenant, type Finding } from './runChecks.js';
import { testCheckLog } from '../../test/support/integrity.js';

const settings = { ordersStuckSeconds: 600 };

/**
 * Checks run while commands commit (the nightly run, someone's
 * GET /v1/integrity) see each command whole or not at all: a consistent
 * tenant has no findings at any moment, whatever is half-way through.
 */
describe('integrity checks during concurrent writes', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('sales, voids, payments, transfers and receipts committing meanwhile give no finding', async () => {
    const { tenantId, owner } = await t.newTenant();
    const ok = async <T extends { status: number; body: any }>(pending: Promise<T>, status = 201): Promise<T> => {
      const response = await pending;
      assert.equal(response.status, status, JSON.stringify(response.body));
      return response;
    };
    const source = (await ok(owner.post('/v1/stores', { code: 'A', name: 'A' }))).body.id;
    const destination = (await ok(owner.post('/v1/stores', { code: 'B', name: 'B' }))).body.id;
    const sku = (await ok(owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Oil', unit: 'piece', price: 500 }))).body.id;
    const customer = (await ok(owner.post('/v1/parties', { kind: 'customer', name: 'Bea' }))).body.id;
    await ok(owner.post(`/v1/stores/${source}/stock/receipts`, { items: [{ sku_id: sku, quantity: 1000 }] }));

    let writing = true;
    const writes = (async () => {
      const work: Array<Promise<unknown>> = [];
      for (let i = 0; i < 40; i++) {
        const method = i % 3 === 0 ? 'credit' : 'cash';
        work.push(
          (async () => {
            const sale = await ok(
              owner.post('/v1/sales', { store_id: source, payment_method: method, items: [{ sku_id: sku, quantity: 1 + (i % 4), unit_price: 500 }], ...(method === 'credit' ? { customer_id: customer } : {}) }),
            );
            if (i % 4 === 0) await ok(owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'test' }), 200);
          })(),
          ok(owner.post('/v1/payments', { party_id: customer, store_id: source, method: 'cash', amount: 100 + i })),
        );
        if (i % 5 === 0) {
          work.push(
            (async () => {
              const transfer = await ok(owner.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items: [{ sku_id: sku, quantity: 2 }] }));
              await ok(owner.post(`/v1/transfers/${transfer.body.id}/approve`, {}), 200);
              await ok(owner.post(`/v1/transfers/${transfer.body.id}/receive`, {}), 200);
            })(),
            ok(owner.post(`/v1/stores/${source}/stock/receipts`, { items: [{ sku_id: sku, quantity: 3 }] })),
          );
        }
        if (i % 8 === 7) await Promise.all(work.splice(0));
      }
      await Promise.all(work);
    })().finally(() => (writing = false));

    const seen: Finding[] = [];
    let runs = 0;
    while (writing || runs < 2) {
      const owned = await runChecksAsOwner(t.admin, allChecks, settings, testCheckLog);
      seen.push(...owned.findings.filter((finding) => finding.tenant_id === tenantId));
      seen.push(...(await runChecksForTenant(t.db, tenantId, allChecks, settings, testCheckLog)).findings);
      runs++;
    }
    await writes;
    assert.ok(runs >= 2);
    assert.deepEqual(seen, []);
  });
});
