import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

describe('stock adjustments', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'ADJ', name: 'Adjusted' })).body;
  });
  after(() => t.close());

  const newSku = async (quantity: number) => {
    const sku = (await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'thing', unit: 'piece', price: 100 })).body;
    assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity }] })).status, 201);
    return sku as { id: string };
  };
  const balance = async (skuId: string) =>
    Number((await t.admin.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store.id, skuId])).rows[0]?.quantity ?? 0);
  const ledger = async (skuId: string) =>
    (
      await t.admin.query(`SELECT kind, quantity_change::int AS change, quantity_after::int AS after FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 ORDER BY id`, [
        tenantId,
        store.id,
        skuId,
      ])
    ).rows as Array<{ kind: string; change: number; after: number }>;

  it('GET /v1/operations/{op_id} names a balance row an adjustment made (a SKU the store never held) as created, one it moved as updated; a void of a sale too', async () => {
    const sku = (await owner.post('/v1/skus', { code: `N-${randomUUID().slice(0, 8)}`, name: 'new thing', unit: 'piece', price: 100 })).body as { id: string };
    const effectsOf = async (opId: string) =>
      ((await owner.get(`/v1/operations/${opId}`)).body.effects as Array<{ table: string; id: string; action: string }>).filter((effect) => effect.table === 'stock_balances');
    const first = await owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: 5, reason: 'found on the shelf' });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const second = await owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: 2, reason: 'found more' });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    assert.deepEqual(await effectsOf(first.body.op_id), [{ table: 'stock_balances', id: `${store.id}/${sku.id}`, action: 'created' }]);
    assert.deepEqual(await effectsOf(second.body.op_id), [{ table: 'stock_balances', id: `${store.id}/${sku.id}`, action: 'updated' }]);
    const sale = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 3, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'mistake' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.deepEqual(await effectsOf(voided.body.voided_by_op), [{ table: 'stock_balances', id: `${store.id}/${sku.id}`, action: 'updated' }]);
  });

  it('the audit event of an adjustment records the balance before and after it', async () => {
    const sku = await newSku(10);
    const response = await owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: -3, reason: 'damaged' });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const events = (
      await t.admin.query(`SELECT before, after FROM events WHERE tenant_id = $1 AND op_id = $2 AND subject_type = 'stock'`, [tenantId, response.body.op_id])
    ).rows;
    assert.equal(events.length, 1);
    assert.equal(events[0].before?.quantity, 10, JSON.stringify(events[0]));
    assert.equal(events[0].after?.quantity, 7, JSON.stringify(events[0]));
    assert.equal(events[0].after?.quantity_after, 7, 'the after state keeps its earlier fields');
  });

  it('adjustments racing sales of the same SKU: each applies to the balance it found, stock never negative, the ledger explains it', async () => {
    const sku = await newSku(30);
    const adjust = () => owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: -1, reason: 'shrinkage' });
    const sell = () => owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] });
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? adjust() : sell())));
    const won = responses.filter((r) => r.status === 201);
    const lost = responses.filter((r) => r.status !== 201);
    assert.equal(won.length, 30, JSON.stringify(lost.map((r) => r.body)));
    assert.ok(lost.every((r) => r.status === 409 && r.body.code === 'insufficient_stock'));
    assert.equal(await balance(sku.id), 0);
    const rows = await ledger(sku.id);
    assert.equal(rows.reduce((sum, row) => sum + row.change, 0), 0);
    // Each row's quantity_after is the balance it left, in the order they were applied.
    let running = 0;
    for (const row of rows) {
      running += row.change;
      assert.equal(row.after, running);
    }
    // Every audit event of the winning adjustments says what it found and left.
    const events = (
      await t.admin.query(
        `SELECT e.before, e.after FROM events e JOIN operations o ON o.tenant_id = e.tenant_id AND o.id = e.op_id
         WHERE e.tenant_id = $1 AND o.type = 'stock.adjust' AND e.subject_id = $2`,
        [tenantId, `${store.id}/${sku.id}`],
      )
    ).rows;
    assert.equal(events.length, won.filter((r) => 'quantity_change' in r.body).length);
    for (const event of events) assert.equal(event.before.quantity - 1, event.after.quantity);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
