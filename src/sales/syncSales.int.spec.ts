import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { aWeekendLater } from '../../test/support/idempotency.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, givenToken, saleRowCounts } from './testkit.js';

describe('POST /v1/sync/sales: offline tills', () => {
  let t: TestApp;
  let owner: ApiClient;
  let cashier: ApiClient;
  let tenantId: string;
  let storeId: string;
  let milk: string;
  let eggs: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'S1');
    milk = await givenSku(owner, 'MILK', 'piece', 120);
    eggs = await givenSku(owner, 'EGGS', 'piece', 30);
    await givenStock(owner, storeId, [
      { sku_id: milk, quantity: 100 },
      { sku_id: eggs, quantity: 100 },
    ]);
    cashier = await givenToken(t, owner, 'cashier');
  });
  after(() => t.close());

  const queued = (quantity: number, sku = milk) => ({
    idempotency_key: randomUUID(),
    store_id: storeId,
    payment_method: 'cash',
    client_created_at: '2026-11-22T09:30:00.000Z',
    items: [{ sku_id: sku, quantity, unit_price: 120 }],
  });

  it('a batch sent twice creates each sale once (the second answer is a replay)', async () => {
    const batch = { sales: [queued(1), queued(2), queued(3, eggs)] };
    const first = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: randomUUID() });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body.results.map((r: { status: number }) => r.status), [201, 201, 201]);
    const before = await saleRowCounts(t, tenantId);

    const second = await cashier.post('/v1/sync/sales', batch);
    assert.equal(second.status, 200);
    assert.deepEqual(second.body.results.map((r: { status: number; replayed: boolean }) => [r.status, r.replayed]), [[201, true], [201, true], [201, true]]);
    assert.deepEqual(second.body.results.map((r: { body: { id: string } }) => r.body.id), first.body.results.map((r: { body: { id: string } }) => r.body.id));
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    // source and till time kept
    const sale = (await owner.get(`/v1/sales/${first.body.results[0].body.id}`)).body;
    assert.equal(sale.source, 'offline');
    assert.equal(sale.client_created_at, '2026-11-22T09:30:00.000Z');
  });

  it('the same batch sent twice at the same time still creates each sale once', async () => {
    const batch = { sales: Array.from({ length: 8 }, () => queued(1)) };
    const before = (await saleRowCounts(t, tenantId)).sales as number;
    const responses = await Promise.all([cashier.post('/v1/sync/sales', batch), cashier.post('/v1/sync/sales', batch)]);
    for (const response of responses) {
      for (const result of response.body.results) {
        assert.ok(result.status === 201 || (result.status === 409 && result.body.code === 'idempotency_key_in_flight'), JSON.stringify(result));
      }
    }
    assert.equal((await saleRowCounts(t, tenantId)).sales, before + 8);
  });

  it('a sale first sent online and then synced is not duplicated (same fingerprint)', async () => {
    const item = queued(1);
    const { idempotency_key, ...body } = item;
    const online = await cashier.post('/v1/sales', body, { idempotencyKey: idempotency_key });
    assert.equal(online.status, 201);
    const synced = await cashier.post('/v1/sync/sales', { sales: [item] });
    assert.equal(synced.body.results[0].status, 201);
    assert.equal(synced.body.results[0].replayed, true);
    assert.equal(synced.body.results[0].body.id, online.body.id);
    // the same key with a different sale is refused, like a direct POST
    const changed = await cashier.post('/v1/sync/sales', { sales: [{ ...item, items: [{ sku_id: milk, quantity: 2, unit_price: 120 }] }] });
    assert.equal(changed.body.results[0].status, 422);
    assert.equal(changed.body.results[0].body.code, 'idempotency_key_reused');
  });

  it('a sale whose answer was lost is not sold again when the till syncs it days later: its key outlives the idempotency TTL and the purge', async () => {
    // Given: a sale sent online whose answer never reached the till, and a
    // weekend (past IDEMPOTENCY_TTL_HOURS) before the till syncs its queue
    const item = queued(2);
    const { idempotency_key, ...body } = item;
    const online = await cashier.post('/v1/sales', body, { idempotencyKey: idempotency_key });
    assert.equal(online.status, 201);
    await aWeekendLater(t, tenantId, idempotency_key);
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);

    // When: the till syncs it, and sends it once more online
    const synced = await cashier.post('/v1/sync/sales', { sales: [item] });
    const again = await cashier.post('/v1/sales', body, { idempotencyKey: idempotency_key });

    // Then: both are replays of the one sale; nothing more is written
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed, synced.body.results[0].body.id], [201, true, online.body.id]);
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', online.body.id]);
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), stock);
    // and the key still binds its sale: another sale under it is refused
    const changed = await cashier.post('/v1/sync/sales', { sales: [{ ...item, items: [{ sku_id: milk, quantity: 3, unit_price: 120 }] }] });
    assert.deepEqual([changed.body.results[0].status, changed.body.results[0].body.code], [422, 'idempotency_key_reused']);
  });

  it('one item failing does not stop the others, each gets its own answer', async () => {
    const unknownSku = '00000000-0000-4000-8000-000000000009';
    const bulk = { ...queued(1), sale_type: 'bulk' };
    const batch = { sales: [queued(1), { ...queued(1), items: [{ sku_id: unknownSku, quantity: 1, unit_price: 1 }] }, bulk, queued(1)] };
    const response = await cashier.post('/v1/sync/sales', batch);
    assert.deepEqual(response.body.results.map((r: { status: number }) => r.status), [201, 400, 403, 201]);
    assert.equal(response.body.results[2].body.code, 'forbidden');
  });

  it("a cashier's offline bulk sale is refused 403 in its result, nothing written; a manager then syncs it under the same key and it is recorded once, as the till's sale", async () => {
    const manager = await givenToken(t, owner, 'manager');
    const bulk = { ...queued(2), sale_type: 'bulk' };
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);

    const refused = await cashier.post('/v1/sync/sales', { sales: [bulk] });
    assert.equal(refused.status, 200);
    assert.deepEqual([refused.body.results[0].status, refused.body.results[0].body.code], [403, 'forbidden']);
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing written for the refused sale');
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), stock);

    const synced = await manager.post('/v1/sync/sales', { sales: [bulk] });
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed], [201, false], JSON.stringify(synced.body));
    const sale = synced.body.results[0].body;
    assert.deepEqual([sale.sale_type, sale.source, sale.client_created_at], ['bulk', 'offline', bulk.client_created_at]);
    const again = await cashier.post('/v1/sync/sales', { sales: [bulk] });
    assert.deepEqual([again.body.results[0].status, again.body.results[0].replayed, again.body.results[0].body.id], [201, true, sale.id], 'the till sending it again gets that sale');
    const after = await saleRowCounts(t, tenantId);
    assert.equal(Number(after.sales), Number(before.sales) + 1, 'recorded once');
    assert.equal((await balanceAndLedger(t, tenantId, storeId, milk)).balance, stock.balance - 2);
  });

  it('a client_created_at the format allows but PostgreSQL cannot read (a fractional leap second, an offset beyond ±15:59): 400 at that sale\'s client_created_at, alone or synced; the rest of the batch is applied', async () => {
    for (const at of ['2016-12-31T23:59:60.5Z', '2026-01-15T10:00:00+16:00']) {
      const before = await saleRowCounts(t, tenantId);
      const alone = await cashier.post('/v1/sales', { store_id: storeId, payment_method: 'cash', client_created_at: at, items: [{ sku_id: milk, quantity: 1, unit_price: 120 }] });
      assert.equal(alone.status, 400, `${at}: ${JSON.stringify(alone.body)}`);
      assert.equal(alone.body.code, 'validation_failed');
      assert.deepEqual(alone.body.errors.map((error: { path: string }) => error.path), ['/body/client_created_at'], at);
      assert.deepEqual(await saleRowCounts(t, tenantId), before, `${at}: nothing written`);

      const response = await cashier.post('/v1/sync/sales', { sales: [queued(1), { ...queued(1), client_created_at: at }, queued(1)] });
      assert.equal(response.status, 200);
      assert.deepEqual(response.body.results.map((r: { status: number }) => r.status), [201, 400, 201], at);
      const refused = response.body.results[1].body;
      assert.equal(refused.code, 'validation_failed');
      assert.deepEqual(refused.errors.map((error: { path: string }) => error.path), ['/body/sales/1/client_created_at'], at);
      const after = await saleRowCounts(t, tenantId);
      assert.equal(Number(after.sales), Number(before.sales) + 2, `${at}: the two other sales are written`);
    }
  });

  it('an offline sale that now lacks stock is recorded: stock goes to 0, the shortfall is on the line and in a review item', async () => {
    // Given: 5 eggs left
    const { balance } = await balanceAndLedger(t, tenantId, storeId, eggs);
    if (balance > 5) {
      const adjust = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: eggs, quantity_change: 5 - balance, reason: 'count' });
      assert.equal(adjust.status, 201);
    }
    // When: the till sold 3 + 4 eggs (two lines) and 1 milk while offline
    const item = { ...queued(1), items: [{ sku_id: eggs, quantity: 3, unit_price: 30 }, { sku_id: milk, quantity: 1, unit_price: 120 }, { sku_id: eggs, quantity: 4, unit_price: 30 }] };
    const response = await cashier.post('/v1/sync/sales', { sales: [item] });
    // Then
    const result = response.body.results[0];
    assert.equal(result.status, 201, JSON.stringify(result));
    assert.equal(result.body.total, 3 * 30 + 120 + 4 * 30, 'the customer paid for everything');
    assert.deepEqual(result.body.items.map((i: { shortfall_quantity: number }) => i.shortfall_quantity), [0, 0, 2]);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, eggs), { balance: 0, ledger: 0 });
    const review = await t.admin.query(`SELECT kind, subject_id, detail FROM review_items WHERE tenant_id = $1 AND kind = 'offline_sale_shortage'`, [tenantId]);
    assert.equal(review.rows.length, 1);
    assert.equal(review.rows[0].subject_id, result.body.id);
    assert.deepEqual(review.rows[0].detail.shortages, [{ sku_id: eggs, requested: 7, available: 5, shortfall: 2 }]);

    // online sales still never oversell
    const online = await cashier.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: eggs, quantity: 1, unit_price: 30 }] });
    assert.equal(online.status, 409);

    // voiding it returns only what it took
    const voided = await owner.post(`/v1/sales/${result.body.id}/void`, { reason: 'returned' });
    assert.equal(voided.status, 200);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, eggs), { balance: 5, ledger: 5 });
  });

  it('a store outside the token\'s scope is 404 for that item only', async () => {
    const other = await givenStore(owner, 'S2');
    const scoped = await givenToken(t, owner, 'cashier', [storeId]);
    const response = await scoped.post('/v1/sync/sales', { sales: [{ ...queued(1), store_id: other }, queued(1)] });
    assert.deepEqual(response.body.results.map((r: { status: number }) => r.status), [404, 201]);
  });

  it("the batch's own Idempotency-Key: the same batch again is applied again — every sale a replay — and answered with Idempotent-Replayed; another batch under it is 422 and applies nothing", async () => {
    const key = randomUUID();
    const batch = { sales: [queued(1), queued(1, eggs)] };
    const first = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.headers.get('idempotent-replayed'), null);
    assert.deepEqual(first.body.results.map((r: { status: number; replayed: boolean }) => [r.status, r.replayed]), [[201, false], [201, false]]);
    const before = await saleRowCounts(t, tenantId);

    const again = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: key });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body.results.map((r: { status: number; replayed: boolean }) => [r.status, r.replayed]), [[201, true], [201, true]]);
    assert.deepEqual(again.body.results.map((r: { body: { id: string } }) => r.body.id), first.body.results.map((r: { body: { id: string } }) => r.body.id));

    const other = await cashier.post('/v1/sync/sales', { sales: [queued(1)] }, { idempotencyKey: key });
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing written by the repeat or the refused batch');
  });

  it("the batch's own Idempotency-Key: the same batch sent again naming its store and SKUs in capitals is the same batch (replayed, nothing new written), as for POST /v1/sales", async () => {
    const key = randomUUID();
    const batch = { sales: [queued(1), queued(2, eggs)] };
    const first = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const before = await saleRowCounts(t, tenantId);

    const upper = {
      sales: batch.sales.map((sale) => ({ ...sale, store_id: sale.store_id.toUpperCase(), items: sale.items.map((item) => ({ ...item, sku_id: item.sku_id.toUpperCase() })) })),
    };
    const again = await cashier.post('/v1/sync/sales', upper, { idempotencyKey: key });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body.results.map((r: { status: number; replayed: boolean }) => [r.status, r.replayed]), [[201, true], [201, true]]);
    assert.deepEqual(again.body.results.map((r: { body: { id: string } }) => r.body.id), first.body.results.map((r: { body: { id: string } }) => r.body.id));
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing written by the repeat');
  });

  it("a sale that failed only for the moment (its key in flight elsewhere) is applied when the batch is sent again under the same batch key", async () => {
    const item = queued(1);
    const elsewhere = await t.admin.connect();
    try {
      // Another API process holds this sale's key (what a transaction applying it holds).
      await elsewhere.query(`SELECT pg_advisory_lock(hashtextextended($1 || '/' || $2, 0))`, [tenantId, item.idempotency_key]);
      const batchKey = randomUUID();
      const first = await cashier.post('/v1/sync/sales', { sales: [item] }, { idempotencyKey: batchKey });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.equal(first.body.results[0].body.code, 'idempotency_key_in_flight');
      await elsewhere.query(`SELECT pg_advisory_unlock_all()`);

      const retry = await cashier.post('/v1/sync/sales', { sales: [item] }, { idempotencyKey: batchKey });
      assert.equal(retry.status, 200, JSON.stringify(retry.body));
      assert.equal(retry.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual([retry.body.results[0].status, retry.body.results[0].replayed], [201, false], 'applied now, not its old 409 replayed');
      const sales = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND idempotency_key = $2`, [tenantId, item.idempotency_key]);
      assert.equal(sales.rows[0].n, 1);
    } finally {
      await elsewhere.query(`SELECT pg_advisory_unlock_all()`).catch(() => undefined);
      elsewhere.release();
    }
  });

  it("a batch key equal to one of its sales' keys is no conflict: the batch's key lives apart from its sales' keys", async () => {
    const key = randomUUID();
    const item = { ...queued(1), idempotency_key: key };
    const first = await cashier.post('/v1/sync/sales', { sales: [item] }, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.results[0].status, 201);
    const again = await cashier.post('/v1/sync/sales', { sales: [item] }, { idempotencyKey: key });
    assert.equal(again.status, 200);
    assert.deepEqual([again.body.results[0].status, again.body.results[0].replayed], [201, true]);
  });

  it('two different batches under one batch key at once: one is applied, the other is refused (422 or 409) and applies nothing', async () => {
    const batchKey = randomUUID();
    const batches = [{ sales: Array.from({ length: 5 }, () => queued(1)) }, { sales: Array.from({ length: 5 }, () => queued(1)) }];
    const responses = await Promise.all(batches.map((batch) => cashier.post('/v1/sync/sales', batch, { idempotencyKey: batchKey })));
    const applied = await Promise.all(
      batches.map(async (batch) => {
        const keys = batch.sales.map((sale) => sale.idempotency_key);
        return (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND idempotency_key = ANY($2::text[])`, [tenantId, keys])).rows[0].n;
      }),
    );
    const statuses = responses.map((r) => r.status);
    assert.deepEqual([...statuses].sort(), statuses.includes(409) ? [200, 409] : [200, 422], `statuses ${statuses}`);
    const winner = statuses.indexOf(200);
    assert.deepEqual(applied, winner === 0 ? [5, 0] : [0, 5]);
  });

  it("the batch's own Idempotency-Key: a sale with text the database cannot store (a NUL, an unpaired surrogate) is refused in its own result; the rest of the batch is applied, and the batch replays", async () => {
    for (const bad of ['k\u0000ey', 'k\ud800ey']) {
      const batchKey = randomUUID();
      const good = queued(1);
      const badKey = { ...queued(1), idempotency_key: bad };
      const badField = { ...queued(1), reference: bad };
      const batch = { sales: [good, badKey, badField] };
      const before = await saleRowCounts(t, tenantId);
      const first = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: batchKey });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(first.body.results.map((r: { status: number }) => r.status), [201, 400, 400]);
      assert.deepEqual(first.body.results[1].body.errors.map((e: { path: string }) => e.path), ['/body/sales/1/idempotency_key']);
      assert.deepEqual(first.body.results[2].body.errors.map((e: { path: string }) => e.path), ['/body/sales/2/reference']);
      const after = await saleRowCounts(t, tenantId);
      assert.equal(Number(after.sales) - Number(before.sales), 1, 'the good sale is applied');

      const again = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: batchKey });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body.results.map((r: { status: number; replayed: boolean }) => [r.status, r.replayed]), [[201, true], [400, false], [400, false]]);
      assert.equal((await saleRowCounts(t, tenantId)).sales, after.sales, 'nothing new written by the repeat');
    }
  });

  it('a key with spaces or tabs around it is the key its Idempotency-Key header carried (HTTP drops them there): a sale sent online first is replayed, not sold twice', async () => {
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);
    const item = { ...queued(1), idempotency_key: ` \t${randomUUID()} ` };
    const { idempotency_key, ...body } = item;
    // The till sent the sale online and got no answer (its key, as HTTP reads a header, without the spaces and tab)…
    const online = await cashier.post('/v1/sales', body, { idempotencyKey: idempotency_key });
    assert.equal(online.status, 201, JSON.stringify(online.body));
    // …then synced it from its queue with the key it holds.
    const synced = await cashier.post('/v1/sync/sales', { sales: [item] });
    assert.deepEqual([synced.body.results[0].idempotency_key, synced.body.results[0].status, synced.body.results[0].replayed, synced.body.results[0].body.id], [idempotency_key, 201, true, online.body.id]);
    assert.equal((await saleRowCounts(t, tenantId)).sales, Number(before.sales) + 1, 'one sale');
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), { balance: stock.balance - 1, ledger: stock.ledger - 1 });

    // A key of nothing but spaces and tabs is no key a header can carry: 400 at that sale's key, nothing written.
    const blank = await cashier.post('/v1/sync/sales', { sales: [{ ...queued(1), idempotency_key: ' \t ' }] });
    assert.deepEqual([blank.body.results[0].status, blank.body.results[0].body.code], [400, 'validation_failed']);
    assert.deepEqual(blank.body.results[0].body.errors.map((error: { path: string }) => error.path), ['/body/sales/0/idempotency_key']);
    assert.equal((await saleRowCounts(t, tenantId)).sales, Number(before.sales) + 1, 'nothing more written');
  });

  it('a sale synced before keys were read as a header reads them, under a key with spaces around it, still replays under that key when its batch is sent again', async () => {
    const item = { ...queued(1), idempotency_key: ` ${randomUUID()} ` };
    const first = await cashier.post('/v1/sync/sales', { sales: [item] });
    assert.equal(first.body.results[0].status, 201, JSON.stringify(first.body));
    // As such a sale was stored before: under its key as sent (by a release before key_as_text, whose records say false).
    const moved = await t.admin.query('UPDATE idempotency_keys SET key = $3, key_as_text = false WHERE tenant_id = $1 AND key = $2', [tenantId, item.idempotency_key.trim(), item.idempotency_key]);
    assert.equal(moved.rowCount, 1);
    const before = await saleRowCounts(t, tenantId);
    const again = await cashier.post('/v1/sync/sales', { sales: [item] });
    assert.deepEqual([again.body.results[0].status, again.body.results[0].replayed, again.body.results[0].body.id], [201, true, first.body.results[0].body.id]);
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing new written');
  });

  it("keys in storekeep's own key space are refused: a sale's key → that sale's 400; the batch's key → 400 and nothing applied", async () => {
    const reservedItem = { ...queued(1), idempotency_key: 'fulfilment-webhook:evt_1' };
    const response = await cashier.post('/v1/sync/sales', { sales: [reservedItem, queued(1)] });
    assert.equal(response.status, 200);
    assert.deepEqual(response.body.results.map((r: { status: number }) => r.status), [400, 201]);
    assert.equal(response.body.results[0].body.code, 'validation_failed');

    const before = await saleRowCounts(t, tenantId);
    const refused = await cashier.post('/v1/sync/sales', { sales: [queued(1)] }, { idempotencyKey: 'job-failed:chain-1' });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.code, 'validation_failed');
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
  });
});
