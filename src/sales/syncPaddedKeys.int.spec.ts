import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenMilkShop, saleRowCounts } from './testkit.js';

/** POST /v1/sync/sales reads each sale's key as its header would carry it: the batch around such keys. */
describe('POST /v1/sync/sales: keys with spaces or tabs around them, in a batch', () => {
  let t: TestApp;
  let cashier: ApiClient;
  let tenantId: string;
  let storeId: string;
  let milk: string;

  before(async () => {
    t = await startTestApp();
    ({ cashier, tenantId, storeId, milk } = await givenMilkShop(t));
  });
  after(() => t.close());

  const queued = (key: string, quantity = 1) => ({
    idempotency_key: key,
    store_id: storeId,
    payment_method: 'cash',
    client_created_at: '2026-11-22T09:30:00.000Z',
    items: [{ sku_id: milk, quantity, unit_price: 120 }],
  });

  it('two sales of one batch whose keys differ only by spaces are one sale; each result echoes its key as sent', async () => {
    const key = randomUUID();
    const before = await saleRowCounts(t, tenantId);
    const response = await cashier.post('/v1/sync/sales', { sales: [queued(` ${key}\t`), queued(key)] });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const results = response.body.results as Array<{ idempotency_key: string; status: number; replayed: boolean; body: { id?: string; code?: string } }>;
    assert.deepEqual(results.map((result) => result.idempotency_key), [` ${key}\t`, key]);
    assert.equal((await saleRowCounts(t, tenantId)).sales, Number(before.sales) + 1, 'one sale');
    // One is sold; the other is its replay, or (still running beside it) 409 to be sent again.
    const sold = results.filter((result) => result.status === 201 && !result.replayed);
    assert.equal(sold.length, 1, JSON.stringify(results));
    const other = results.find((result) => result !== sold[0])!;
    assert.ok((other.status === 201 && other.replayed && other.body.id === sold[0]!.body.id) || (other.status === 409 && other.body.code === 'idempotency_key_in_flight'), JSON.stringify(other));
    // Sent again, both answer the one sale.
    const again = await cashier.post('/v1/sync/sales', { sales: [queued(` ${key}\t`), queued(key)] });
    assert.deepEqual(
      again.body.results.map((result: { status: number; replayed: boolean; body: { id: string } }) => [result.status, result.replayed, result.body.id]),
      [
        [201, true, sold[0]!.body.id],
        [201, true, sold[0]!.body.id],
      ],
    );
    assert.equal((await saleRowCounts(t, tenantId)).sales, Number(before.sales) + 1, 'still one sale');
  });

  it("a batch with padded keys sent again under its own Idempotency-Key is that batch's replay, and its sales replay", async () => {
    const batchKey = randomUUID();
    const batch = { sales: [queued(` ${randomUUID()} `), queued(`\t${randomUUID()}`, 2)] };
    const first = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: batchKey });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body.results.map((result: { status: number }) => result.status), [201, 201]);
    const before = await saleRowCounts(t, tenantId);
    const again = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: batchKey });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(
      again.body.results.map((result: { idempotency_key: string; status: number; replayed: boolean; body: { id: string } }) => [result.idempotency_key, result.status, result.replayed, result.body.id]),
      first.body.results.map((result: { idempotency_key: string; body: { id: string } }) => [result.idempotency_key, 201, true, result.body.id]),
    );
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing new written');
  });
});
