import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';

/** GET /v1/stores/{store_id}/stock/{sku_id}: one SKU's stock, now or as of a moment — what the store's stock list says of it. */
describe('GET /v1/stores/{store_id}/stock/{sku_id}', () => {
  let t: TestApp;
  let owner: ApiClient;
  let store: string;
  let milk: string;

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    store = await givenStore(owner, 'Q1');
    milk = await givenSku(owner, 'MILK', 'piece', 120);
  });
  after(() => t.close());

  const listed = async (query = '') => {
    const page = await owner.get(`/v1/stores/${store}/stock?limit=500${query}`);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    return page.body;
  };

  it('now and as of any moment: what the stock list gives for the SKU; a SKU the store never held is 0', async () => {
    // Given: 100 received, 30 sold, 5 received — with a moment between each
    const moments = [new Date().toISOString()];
    await new Promise((resolve) => setTimeout(resolve, 20));
    await givenStock(owner, store, [{ sku_id: milk, quantity: 100 }]);
    moments.push(new Date().toISOString());
    await new Promise((resolve) => setTimeout(resolve, 20));
    const sold = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: milk, quantity: 30, unit_price: 120 }] });
    assert.equal(sold.status, 201, JSON.stringify(sold.body));
    moments.push(new Date().toISOString());
    await new Promise((resolve) => setTimeout(resolve, 20));
    await givenStock(owner, store, [{ sku_id: milk, quantity: 5 }]);
    const bread = await givenSku(owner, 'BREAD', 'piece', 200);
    // When / Then: now
    const now = await owner.get(`/v1/stores/${store}/stock/${milk}`);
    assert.equal(now.status, 200, JSON.stringify(now.body));
    // What the list has for it, and the store's reorder level of it (none here: null).
    assert.deepEqual(now.body, { ...(await listed()).items.find((item: { sku_id: string }) => item.sku_id === milk), reorder_level: null });
    assert.equal(now.body.quantity, 75);
    // As of each moment: 0, 100, 70 — as the list has them
    const expected = [0, 100, 70];
    for (const [index, moment] of moments.entries()) {
      const one = await owner.get(`/v1/stores/${store}/stock/${milk}?as_of=${encodeURIComponent(moment)}`);
      assert.equal(one.status, 200, JSON.stringify(one.body));
      const list = await listed(`&as_of=${encodeURIComponent(moment)}`);
      assert.deepEqual(one.body, { as_of: list.as_of, ...list.items.find((item: { sku_id: string }) => item.sku_id === milk) });
      assert.equal(one.body.quantity, expected[index], moment);
    }
    // Never held in this store: 0, now and as of now.
    assert.deepEqual((await owner.get(`/v1/stores/${store}/stock/${bread}`)).body, { sku_id: bread, quantity: 0, updated_at: null, reorder_level: null });
    assert.equal((await owner.get(`/v1/stores/${store}/stock/${bread}?as_of=${encodeURIComponent(new Date().toISOString())}`)).body.quantity, 0);
  });

  it('404 for an unknown SKU, another tenant\'s SKU or store, a store outside the token\'s; 400 for an as_of PostgreSQL cannot read or another parameter', async () => {
    const stranger = await t.newTenant();
    const theirSku = await givenSku(stranger.owner, 'THEIRS', 'piece', 1);
    const theirStore = await givenStore(stranger.owner, 'T1');
    const other = await givenStore(owner, 'Q2');
    const limited = await givenToken(t, owner, 'cashier', [other]);
    for (const [client, path] of [
      [owner, `/v1/stores/${store}/stock/${randomUUID()}`],
      [owner, `/v1/stores/${store}/stock/${theirSku}`],
      [owner, `/v1/stores/${theirStore}/stock/${milk}`],
      [stranger.owner, `/v1/stores/${store}/stock/${milk}`],
      [limited, `/v1/stores/${store}/stock/${milk}`],
    ] as const) {
      const refused = await client.get(path);
      assert.equal(refused.status, 404, `${path}: ${JSON.stringify(refused.body)}`);
    }
    assert.equal((await limited.get(`/v1/stores/${other}/stock/${milk}`)).status, 200);
    for (const [query, field] of [
      ['as_of=yesterday', '/querystring/as_of'],
      [`as_of=${encodeURIComponent('0000-01-01T00:00:00Z')}`, '/querystring/as_of'],
      ['limit=5', '/querystring/limit'],
    ] as const) {
      const refused = await owner.get(`/v1/stores/${store}/stock/${milk}?${query}`);
      assert.equal(refused.status, 400, `${query}: ${JSON.stringify(refused.body)}`);
      assert.ok(JSON.stringify(refused.body.errors).includes(field), JSON.stringify(refused.body.errors));
    }
  });
});
