import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from './testkit.js';

/** GET /v1/sales/{id}/returnable: what a return may still take back, per SKU — the figures a return answers after itself. */
describe('GET /v1/sales/{id}/returnable', () => {
  let t: TestApp;
  let owner: ApiClient;
  let store: string;
  let tea: string;
  let coffee: string;

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    store = await givenStore(owner, 'R1');
    tea = await givenSku(owner, 'TEA', 'piece', 100);
    coffee = await givenSku(owner, 'COFFEE', 'kg', 2000);
    await givenStock(owner, store, [
      { sku_id: tea, quantity: 1000 },
      { sku_id: coffee, quantity: 100_000 },
    ]);
  });
  after(() => t.close());

  const sell = async (items: unknown[]) => {
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    return sale.body as { id: string; total: number };
  };

  it('per SKU in line order (lines of one SKU summed): all of it before any return, then what each return left — the same figures the return answered', async () => {
    // Given: tea on two lines, coffee on one
    const sale = await sell([
      { sku_id: tea, quantity: 3, unit_price: 100 },
      { sku_id: coffee, quantity: 1500, unit_price: 2000 },
      { sku_id: tea, quantity: 2, unit_price: 100 },
    ]);
    // When / Then
    const fresh = await owner.get(`/v1/sales/${sale.id}/returnable`);
    assert.equal(fresh.status, 200, JSON.stringify(fresh.body));
    assert.deepEqual(fresh.body, {
      sale_id: sale.id,
      status: 'completed',
      returned_total: 0,
      remaining: [
        { sku_id: tea, sold: 5, returned: 0, returnable: 5, returnable_piece_ids: [] },
        { sku_id: coffee, sold: 1500, returned: 0, returnable: 1500, returnable_piece_ids: [] },
      ],
    });
    const returned = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: tea, quantity: 4 }, { sku_id: coffee, quantity: 500 }], reason: 'back' });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    const after = await owner.get(`/v1/sales/${sale.id}/returnable`);
    assert.deepEqual(after.body, { sale_id: sale.id, status: 'completed', returned_total: returned.body.sale_returned_total, remaining: returned.body.remaining });
    assert.deepEqual(
      after.body.remaining.map((entry: { returnable: number }) => entry.returnable),
      [1, 1000],
    );
    // What it lists is what the next return is held to: one more tea than listed is refused with the same figure
    const tooMuch = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: tea, quantity: 2 }], reason: 'more' });
    assert.equal(tooMuch.status, 409, JSON.stringify(tooMuch.body));
    assert.deepEqual(tooMuch.body.returnable, [{ sku_id: tea, requested: 2, returnable: 1 }]);
  });

  it('workshop pieces: the pieces still returnable, sorted; a voided sale answers its status, and the void gave its pieces back', async () => {
    const cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 300, tracks_pieces: true })).body.id as string;
    const received = await owner.post('/v1/pieces', { store_id: store, sku_id: cloth, pieces: [1000, 2000, 3000].map((quantity) => ({ kind: 'roll', quantity })) });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const pieces = (received.body.pieces as Array<{ id: string }>).map((piece) => piece.id);
    const sale = await sell([
      { sku_id: cloth, piece_ids: pieces, unit_price: 300 },
      { sku_id: tea, quantity: 1, unit_price: 100 },
    ]);
    const returned = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: cloth, piece_ids: [pieces[1]] }], reason: 'one roll' });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    const listed = await owner.get(`/v1/sales/${sale.id}/returnable`);
    assert.deepEqual(listed.body.remaining, [
      { sku_id: cloth, sold: 6000, returned: 2000, returnable: 4000, returnable_piece_ids: [pieces[0], pieces[2]].sort() },
      { sku_id: tea, sold: 1, returned: 0, returnable: 1, returnable_piece_ids: [] },
    ]);
    assert.deepEqual(listed.body.remaining, returned.body.remaining);
    // When: the sale is voided
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'all back' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    // Then: the status says a return is now only a till's record of one made before the void; no piece is the sale's any more
    const afterVoid = await owner.get(`/v1/sales/${sale.id}/returnable`);
    assert.deepEqual([afterVoid.body.status, afterVoid.body.returned_total], ['voided', returned.body.sale_returned_total]);
    assert.deepEqual(afterVoid.body.remaining[0].returnable_piece_ids, []);
  });

  it('read from one snapshot: while returns commit, every answer has returned_total equal to what its remaining says was returned', async () => {
    // Given: 12 teas at 100 each
    const sale = await sell([{ sku_id: tea, quantity: 12, unit_price: 100 }]);
    // When: 12 returns of one tea and 40 reads, all at once
    const [returns, reads] = await Promise.all([
      Promise.all(Array.from({ length: 12 }, () => owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: tea, quantity: 1 }], reason: 'one' }, { idempotencyKey: randomUUID() }))),
      Promise.all(Array.from({ length: 40 }, () => owner.get(`/v1/sales/${sale.id}/returnable`))),
    ]);
    // Then
    assert.ok(returns.every((response) => response.status === 201), JSON.stringify(returns.map((response) => response.status)));
    for (const read of reads) {
      assert.equal(read.status, 200, JSON.stringify(read.body));
      const [entry] = read.body.remaining;
      assert.equal(read.body.returned_total, entry.returned * 100, JSON.stringify(read.body));
      assert.equal(entry.returned + entry.returnable, 12);
    }
    const last = await owner.get(`/v1/sales/${sale.id}/returnable`);
    assert.deepEqual([last.body.returned_total, last.body.remaining[0].returnable], [1200, 0]);
    const balance = await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [store, tea]);
    const ledger = await t.admin.query(`SELECT sum(quantity_change)::bigint AS sum FROM stock_ledger WHERE store_id = $1 AND sku_id = $2`, [store, tea]);
    assert.equal(String(balance.rows[0].quantity), String(ledger.rows[0].sum));
  });

  it('a cashier reads it (sales.read); another store of the tenant for a limited token, another tenant, a made-up id: 404 alike', async () => {
    const sale = await sell([{ sku_id: tea, quantity: 1, unit_price: 100 }]);
    const cashier = await givenToken(t, owner, 'cashier', [store]);
    assert.equal((await cashier.get(`/v1/sales/${sale.id}/returnable`)).status, 200);
    const elsewhere = await givenToken(t, owner, 'manager', [await givenStore(owner, 'R2')]);
    const stranger = (await t.newTenant()).owner;
    for (const [client, id] of [
      [elsewhere, sale.id],
      [stranger, sale.id],
      [owner, randomUUID()],
    ] as const) {
      const response = await client.get(`/v1/sales/${id}/returnable`);
      assert.deepEqual([response.status, response.body.code], [404, 'not_found']);
    }
    const malformed = await owner.get('/v1/sales/not-an-id/returnable');
    assert.equal(malformed.status, 400);
  });
});
