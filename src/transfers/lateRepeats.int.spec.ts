import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { aWeekendLater as aWeekendPasses } from '../../test/support/idempotency.js';

/**
 * A store worker's device that lost the answer to a transfer action sends the
 * SAME request again after its Idempotency-Key expired (IDEMPOTENCY_TTL_HOURS,
 * purged hourly). A 409 would read as "not recorded" and the goods would be
 * booked again by hand: the same action, with the same content, on a transfer
 * already past it is answered as already done (200, Idempotent-Replayed: true,
 * the action's own answer, nothing written, its key kept). Other content
 * (other received quantities) is still refused: 409 invalid_transition.
 */
describe('a transfer action repeated after its key expired', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let north: { id: string };
  let south: { id: string };
  let flour: { id: string };
  let rice: { id: string };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    north = (await owner.post('/v1/stores', { code: 'N', name: 'North' })).body;
    south = (await owner.post('/v1/stores', { code: 'S', name: 'South' })).body;
    flour = (await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'kg', price: 120 })).body;
    rice = (await owner.post('/v1/skus', { code: 'RICE', name: 'Rice', unit: 'kg', price: 200 })).body;
    await owner.post(`/v1/stores/${north.id}/stock/receipts`, { items: [{ sku_id: flour.id, quantity: 100_000 }, { sku_id: rice.id, quantity: 50_000 }] });
  });
  after(() => t.close());

  /** A weekend passes: the key's record is past its TTL and the hourly purge ran. */
  async function aWeekendLater(key: string): Promise<void> {
    await aWeekendPasses(t, tenantId, key);
    const left = await t.admin.query(`SELECT 1 FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    assert.equal(left.rows.length, 0, 'the key was purged');
  }

  /** Everything a repeat could have written. */
  const rows = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT count(*) FROM review_items WHERE tenant_id = $1)::int AS reviews,
                (SELECT string_agg(store_id || '/' || sku_id || '=' || quantity, ',' ORDER BY store_id, sku_id) FROM stock_balances WHERE tenant_id = $1) AS stock,
                (SELECT string_agg(id || ':' || status || version, ',' ORDER BY id) FROM stock_transfers WHERE tenant_id = $1) AS transfers,
                (SELECT string_agg(id || ':' || quantity_in_transit || '/' || coalesce(quantity_received::text, '-'), ',' ORDER BY id) FROM stock_transfer_items WHERE tenant_id = $1) AS items`,
        [tenantId],
      )
    ).rows[0];
  const keyRecord = async (key: string) =>
    (await t.admin.query(`SELECT op_id, response_status, expires_at > now() AS live FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key])).rows[0];
  const request = async (items: Array<{ sku_id: string; quantity: number }>) => {
    const response = await owner.post('/v1/transfers', { source_store_id: north.id, destination_store_id: south.id, items });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string };
  };
  const opOf = async (id: string, column: 'approved_op' | 'received_op' | 'cancelled_op') =>
    (await t.admin.query(`SELECT ${column} AS op FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0].op as string;

  it('a receipt repeated with the same quantities is answered as done: nothing received twice, the key kept', async () => {
    const transfer = await request([{ sku_id: flour.id, quantity: 1_000 }, { sku_id: rice.id, quantity: 400 }]);
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/approve`)).status, 200);
    const key = randomUUID();
    const body = { items: [{ sku_id: flour.id, quantity_received: 900 }, { sku_id: rice.id, quantity_received: 400 }] };
    const first = await owner.post(`/v1/transfers/${transfer.id}/receive`, body, { idempotencyKey: key, headers: { 'if-match': '"2"' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await aWeekendLater(key);
    const snapshot = await rows();

    const again = await owner.post(`/v1/transfers/${transfer.id}/receive`, body, { idempotencyKey: key, headers: { 'if-match': '"2"' } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers.get('etag'), '"3"');
    assert.deepEqual(await rows(), snapshot, 'nothing written: no second receipt, no second shortfall item');
    // The key is kept with the receipt's own operation: a different request under it is refused.
    const record = await keyRecord(key);
    assert.deepEqual(record, { op_id: await opOf(transfer.id, 'received_op'), response_status: 200, live: true });
    const reused = await owner.post(`/v1/transfers/${transfer.id}/receive`, { items: [] }, { idempotencyKey: key });
    assert.equal(reused.status, 422, JSON.stringify(reused.body));

    // The same quantities listed otherwise (another order, without a key) are the same receipt.
    const reordered = await owner.post(`/v1/transfers/${transfer.id}/receive`, { items: [...body.items].reverse() });
    assert.equal(reordered.status, 200, JSON.stringify(reordered.body));
    assert.equal(reordered.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await rows(), snapshot);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('"everything arrived" repeated: the same receipt whether it lists the quantities or sends no body', async () => {
    const transfer = await request([{ sku_id: rice.id, quantity: 300 }]);
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/approve`)).status, 200);
    const first = await owner.post(`/v1/transfers/${transfer.id}/receive`);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const snapshot = await rows();
    for (const body of [undefined, {}, null, { items: [{ sku_id: rice.id, quantity_received: 300 }] }]) {
      const again = await owner.post(`/v1/transfers/${transfer.id}/receive`, body, { idempotencyKey: randomUUID() });
      assert.equal(again.status, 200, `${JSON.stringify(body)}: ${JSON.stringify(again.body)}`);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, first.body);
    }
    assert.deepEqual(await rows(), snapshot);
  });

  it('a receipt repeated with other quantities is refused (409 invalid_transition): it was not recorded, and nothing is', async () => {
    const transfer = await request([{ sku_id: flour.id, quantity: 500 }]);
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/approve`)).status, 200);
    const key = randomUUID();
    const first = await owner.post(`/v1/transfers/${transfer.id}/receive`, { items: [{ sku_id: flour.id, quantity_received: 500 }] }, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await aWeekendLater(key);
    const snapshot = await rows();
    for (const body of [{ items: [{ sku_id: flour.id, quantity_received: 450 }] }, { items: [] }, { items: [{ sku_id: flour.id, quantity_received: 999 }] }]) {
      const other = await owner.post(`/v1/transfers/${transfer.id}/receive`, body, { idempotencyKey: key });
      assert.equal(other.status, 409, `${JSON.stringify(body)}: ${JSON.stringify(other.body)}`);
      assert.equal(other.body.code, 'invalid_transition');
      assert.equal(other.body.current_status, 'received');
      assert.equal(other.headers.get('idempotent-replayed'), null);
    }
    assert.deepEqual(await rows(), snapshot);
    assert.equal(await keyRecord(key), undefined, 'a refusal keeps no key');
  });

  it('an approval repeated after the transfer was approved — and received — is answered with the approval', async () => {
    const transfer = await request([{ sku_id: flour.id, quantity: 700 }]);
    const key = randomUUID();
    const first = await owner.post(`/v1/transfers/${transfer.id}/approve`, {}, { idempotencyKey: key, headers: { 'if-match': '"1"' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await aWeekendLater(key);
    let snapshot = await rows();

    const again = await owner.post(`/v1/transfers/${transfer.id}/approve`, {}, { idempotencyKey: key, headers: { 'if-match': '"1"' } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers.get('etag'), '"2"');
    assert.deepEqual(await rows(), snapshot, 'the stock left the source once');
    assert.deepEqual(await keyRecord(key), { op_id: await opOf(transfer.id, 'approved_op'), response_status: 200, live: true });

    // Received since: the approval's answer is still the approval's (approved, in transit), not the receipt's.
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/receive`)).status, 200);
    snapshot = await rows();
    const later = await owner.post(`/v1/transfers/${transfer.id}/approve`, undefined, { idempotencyKey: randomUUID() });
    assert.equal(later.status, 200, JSON.stringify(later.body));
    assert.equal(later.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(later.body, first.body);
    assert.deepEqual(await rows(), snapshot);

    // If-Match naming a version the approval was not made on is still 412 (it acted on something else).
    const stale = await owner.post(`/v1/transfers/${transfer.id}/approve`, {}, { headers: { 'if-match': '"7"' } });
    assert.equal(stale.status, 412, JSON.stringify(stale.body));
    // Cancelling it is another action: 409, as before.
    const cancel = await owner.post(`/v1/transfers/${transfer.id}/cancel`);
    assert.equal(cancel.status, 409, JSON.stringify(cancel.body));
    assert.equal(cancel.body.code, 'invalid_transition');
    assert.deepEqual(await rows(), snapshot);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a cancel repeated on the cancelled transfer is answered as done; approve or receive of it stay 409', async () => {
    const transfer = await request([{ sku_id: rice.id, quantity: 50 }]);
    const key = randomUUID();
    const first = await owner.post(`/v1/transfers/${transfer.id}/cancel`, undefined, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await aWeekendLater(key);
    const snapshot = await rows();
    const again = await owner.post(`/v1/transfers/${transfer.id}/cancel`, {}, { idempotencyKey: key });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assert.deepEqual(await keyRecord(key), { op_id: await opOf(transfer.id, 'cancelled_op'), response_status: 200, live: true });
    for (const action of ['approve', 'receive']) {
      const refused = await owner.post(`/v1/transfers/${transfer.id}/${action}`);
      assert.equal(refused.status, 409, action);
      assert.equal(refused.body.code, 'invalid_transition');
    }
    assert.deepEqual(await rows(), snapshot);
  });

  it('a repeat is answered only to a token that could make the request: the other end, 403; outside the store, 404', async () => {
    const transfer = await request([{ sku_id: rice.id, quantity: 20 }]);
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/approve`)).status, 200);
    // The source's staff see the transfer but may not receive it (the destination's action): 403, not the answer.
    const sourceOnly = t.client((await owner.post('/v1/tokens', { name: 'north-only', role: 'manager', store_ids: [north.id] })).body.token);
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/receive`)).status, 200);
    const southOnly = t.client((await owner.post('/v1/tokens', { name: 'south-only', role: 'manager', store_ids: [south.id] })).body.token);
    const snapshot = await rows();
    const hidden = await sourceOnly.post(`/v1/transfers/${transfer.id}/receive`);
    assert.equal(hidden.status, 403, JSON.stringify(hidden.body));
    assert.equal(hidden.body.code, 'forbidden');
    assert.equal(hidden.headers.get('idempotent-replayed'), null);
    const shown = await southOnly.post(`/v1/transfers/${transfer.id}/receive`);
    assert.equal(shown.status, 200, JSON.stringify(shown.body));
    assert.equal(shown.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await rows(), snapshot);
  });
});
