import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * A body nested deeper than any request of the API (a sync batch, the
 * deepest, nests six levels) is refused with a problem document before
 * anything reads it — the fingerprint of a sync batch (its sales may carry
 * unknown fields, refused sale by sale) walked it recursively and answered 500.
 */
describe('deeply nested JSON bodies', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = (await owner.post('/v1/stores', { code: 'NEST', name: 'Nested' })).body.id;
  });
  after(() => t.close());

  const snapshot = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantId],
      )
    ).rows[0];

  for (const depth of [64, 5_000, 200_000]) {
    it(`a sync batch whose sale nests ${depth} levels deep is 400 validation_failed, with or without the batch's key, nothing written`, async () => {
      const nested = '['.repeat(depth) + ']'.repeat(depth);
      const raw = `{"sales":[{"idempotency_key":"deep-${depth}","store_id":"${storeId}","payment_method":"cash","items":[],"x":${nested}}]}`;
      const before = await snapshot();
      for (const options of [{}, { idempotencyKey: `deep-batch-${depth}` }]) {
        const response = await owner.request('POST', '/v1/sync/sales', undefined, { rawBody: raw, ...options });
        assert.equal(response.status, 400, JSON.stringify(response.body).slice(0, 500));
        assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
        assert.equal(response.body.code, 'validation_failed');
        assert.equal(response.body.correlation_id, response.headers.get('x-correlation-id'));
        assert.match(response.body.errors[0].path, /^\/body\/sales\/0\/x(\/0)+$/);
      }
      const stores = await owner.request('POST', '/v1/stores', undefined, { rawBody: `{"code":"DEEP","name":"Deep","x":${nested}}` });
      assert.equal(stores.status, 400, JSON.stringify(stores.body).slice(0, 500));
      assert.equal(stores.body.code, 'validation_failed');
      assert.deepEqual(await snapshot(), before);
    });
  }

  it('a body nested as deep as the limit is read (a sync batch of sales with workshop pieces nests six)', async () => {
    const nested = '['.repeat(29) + ']'.repeat(29);
    // 32 levels, the limit: the body, sales, a sale, and x's 29 arrays.
    const raw = `{"sales":[{"idempotency_key":"at-limit","store_id":"${storeId}","payment_method":"cash","items":[],"x":${nested}}]}`;
    const response = await owner.request('POST', '/v1/sync/sales', undefined, { rawBody: raw });
    assert.equal(response.status, 200, JSON.stringify(response.body).slice(0, 500));
    assert.equal(response.body.results[0].status, 400);
    assert.deepEqual(response.body.results[0].body.errors.map((e: { path: string }) => e.path).sort(), ['/body/sales/0/items', '/body/sales/0/x']);
  });
});
