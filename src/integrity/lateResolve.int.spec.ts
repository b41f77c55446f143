import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { aWeekendLater as aWeekendPasses } from '../../test/support/idempotency.js';

/**
 * A review item resolved from a device that lost the answer and sends the
 * same resolution again after its Idempotency-Key expired: answered as
 * already done (200, Idempotent-Replayed: true, nothing written, the key
 * kept). Another note was not recorded: 409 invalid_transition, as before.
 */
describe('a review item resolution repeated after its key expired', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let item: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    const north = (await owner.post('/v1/stores', { code: 'N', name: 'North' })).body;
    const south = (await owner.post('/v1/stores', { code: 'S', name: 'South' })).body;
    const rice = (await owner.post('/v1/skus', { code: 'RICE', name: 'Rice', unit: 'kg', price: 200 })).body;
    await owner.post(`/v1/stores/${north.id}/stock/receipts`, { items: [{ sku_id: rice.id, quantity: 1_000 }] });
    const transfer = (await owner.post('/v1/transfers', { source_store_id: north.id, destination_store_id: south.id, items: [{ sku_id: rice.id, quantity: 100 }] })).body;
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/approve`)).status, 200);
    assert.equal((await owner.post(`/v1/transfers/${transfer.id}/receive`, { items: [{ sku_id: rice.id, quantity_received: 90 }] })).status, 200);
    item = (await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'transfer_shortfall'`, [tenantId])).rows[0].id;
  });
  after(() => t.close());

  const rows = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT string_agg(id || ':' || status || ':' || coalesce(resolved_by_op::text, '-') || ':' || coalesce(resolution_note, '-'), ',' ORDER BY id) FROM review_items WHERE tenant_id = $1) AS items`,
        [tenantId],
      )
    ).rows[0];

  it('the same note again is answered as done, under the expired key or none; another note is 409', async () => {
    const key = randomUUID();
    const body = { note: 'ten kilos found on the van' };
    const first = await owner.post(`/v1/review-items/${item}/resolve`, body, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await aWeekendPasses(t, tenantId, key);
    const snapshot = await rows();

    const again = await owner.post(`/v1/review-items/${item}/resolve`, body, { idempotencyKey: key });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    const unkeyed = await owner.post(`/v1/review-items/${item}/resolve`, body);
    assert.deepEqual([unkeyed.status, unkeyed.headers.get('idempotent-replayed')], [200, 'true']);
    assert.deepEqual(await rows(), snapshot, 'nothing written');
    const record = (await t.admin.query(`SELECT k.op_id, r.resolved_by_op FROM idempotency_keys k, review_items r WHERE k.tenant_id = $1 AND k.key = $2 AND r.id = $3`, [tenantId, key, item])).rows[0];
    assert.equal(record.op_id, record.resolved_by_op, 'the key is kept, naming the resolution');

    const other = await owner.post(`/v1/review-items/${item}/resolve`, { note: 'written off' });
    assert.deepEqual([other.status, other.body.code, other.body.current_status], [409, 'invalid_transition', 'resolved']);
    assert.deepEqual(await rows(), snapshot);
  });
});
