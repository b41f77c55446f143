import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';

/** UUIDs in capitals (as some tills' platforms write them) name the same rows; a request's spelling does not change its identity. */
describe('ids in any letter case, and one request however its path is spelled', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let otherStore: string;
  let skuId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'UC-1');
    otherStore = await givenStore(owner, 'UC-2');
    skuId = await givenSku(owner, 'UC-SKU', 'piece', 100);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 10 }]);
  });
  after(() => t.close());

  const stock = async (store: string) =>
    (await t.admin.query(`SELECT quantity::int AS q FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, skuId])).rows[0]?.q;

  it('a sale and a stock receipt naming the store and SKU in capitals: accepted, answered and stored in lowercase', async () => {
    const sale = await owner.post('/v1/sales', { store_id: storeId.toUpperCase(), payment_method: 'cash', items: [{ sku_id: skuId.toUpperCase(), quantity: 2, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    assert.equal(sale.body.store_id, storeId);
    assert.equal(sale.body.items[0].sku_id, skuId);
    assert.equal(await stock(storeId), 8);

    const receipt = await owner.post(`/v1/stores/${storeId.toUpperCase()}/stock/receipts`, { items: [{ sku_id: skuId.toUpperCase(), quantity: 5 }] });
    assert.equal(receipt.status, 201, JSON.stringify(receipt.body));
    assert.equal(await stock(storeId), 13);
  });

  it('a transfer from a store to itself written in two letter cases is the same store: 400, nothing written', async () => {
    const transfer = await owner.post('/v1/transfers', {
      source_store_id: storeId,
      destination_store_id: storeId.toUpperCase(),
      items: [{ sku_id: skuId, quantity: 1 }],
    });
    assert.equal(transfer.status, 400, JSON.stringify(transfer.body));
    assert.equal(transfer.body.code, 'validation_failed');
    const rows = await t.admin.query(`SELECT count(*)::int AS n FROM stock_transfers WHERE tenant_id = $1`, [tenantId]);
    assert.equal(rows.rows[0].n, 0);
  });

  it("a store-limited token naming its own store in capitals may sell there, and still not in another store", async () => {
    const cashier = await givenToken(t, owner, 'cashier', [storeId]);
    const own = await cashier.post('/v1/sales', { store_id: storeId.toUpperCase(), payment_method: 'cash', items: [{ sku_id: skuId, quantity: 1, unit_price: 100 }] });
    assert.equal(own.status, 201, JSON.stringify(own.body));
    const other = await cashier.post('/v1/sales', { store_id: otherStore.toUpperCase(), payment_method: 'cash', items: [{ sku_id: skuId, quantity: 1, unit_price: 100 }] });
    assert.equal(other.status, 404);
  });

  it('the same Idempotency-Key with a trailing slash, or an id in capitals in the path, replays the first answer', async () => {
    const key = randomUUID();
    const first = await owner.post('/v1/stores', { code: 'UC-SLASH', name: 'Slash' }, { idempotencyKey: key });
    assert.equal(first.status, 201);
    const again = await owner.post('/v1/stores/', { code: 'UC-SLASH', name: 'Slash' }, { idempotencyKey: key });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.id, first.body.id);
    const stores = await t.admin.query(`SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1 AND code = 'UC-SLASH'`, [tenantId]);
    assert.equal(stores.rows[0].n, 1);

    const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 1, unit_price: 100 }] });
    assert.equal(sale.status, 201);
    const voidKey = randomUUID();
    const voided = await owner.post(`/v1/sales/${sale.body.id.toUpperCase()}/void`, { reason: 'typo' }, { idempotencyKey: voidKey });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    const replay = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'typo' }, { idempotencyKey: voidKey });
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
  });
});
