import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';

import { encodeCursor, listAt } from './schemas.js';

/** A cursor of the list at `path` (as it would write one) naming `position`. */
const cursorOf = (path: string, position: unknown) => encodeCursor(position, listAt(path));

/**
 * A cursor that decodes but names no position of its list (a number too big
 * for its column, a day that does not exist, an id that is no id) is the
 * client's mistake: 400 at /querystring/cursor, as for any other bad cursor —
 * not a database error passed through.
 */
describe('list cursors that decode but name no position are 400 at /querystring/cursor', () => {
  let t: TestApp;
  let owner: ApiClient;
  let storeId: string;
  let skuId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    storeId = await givenStore(owner, 'CUR');
    skuId = await givenSku(owner, 'CUR');
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 5 }]);
  });
  after(() => t.close());

  const cases = (): Array<[string, unknown]> => [
    [`/v1/stores/${storeId}/stock/${skuId}/ledger`, { id: '99999999999999999999' }],
    [`/v1/stores/${storeId}/stock/${skuId}/ledger`, { id: '9223372036854775808' }],
    ['/v1/points-of-sale', { id: 'not-a-uuid' }],
    ['/v1/visits', { scheduled_for: '2026-02-30T10:00:00Z', id: '01a24665-81c7-7000-8000-000000000000' }],
    ['/v1/visits', { scheduled_for: 'yesterday', id: '01a24665-81c7-7000-8000-000000000000' }],
    ['/v1/visits', { scheduled_for: '2026-02-01T10:00:00Z', id: 'x' }],
    ['/v1/pieces', { id: 'not-a-uuid' }],
    // a code the database cannot hold (no store or SKU has one: it could not be stored)
    ['/v1/stores', { code: 'A\u0000' }],
    ['/v1/skus', { code: '\u0000' }],
  ];

  it('each is refused the same way, and reported as the client\'s mistake', async () => {
    const wrong: string[] = [];
    for (const [path, position] of cases()) {
      const response = await owner.get(`${path}?cursor=${cursorOf(path, position)}`);
      const right =
        response.status === 400 &&
        response.body.code === 'validation_failed' &&
        JSON.stringify(response.body.errors) === JSON.stringify([{ path: '/querystring/cursor', message: 'is not a cursor from this list' }]);
      if (!right) wrong.push(`${path.replace(/[0-9a-f-]{36}/g, '{id}')} ${JSON.stringify(position)} → ${response.status} ${JSON.stringify(response.body.errors ?? response.body)}`);
    }
    assert.deepEqual(wrong, []);
  });

  it('a cursor from the list with a character added (or a padding, or the standard alphabet) is refused, whatever its length — base64url decoding dropped a trailing character', async () => {
    // Positions whose encodings end on each of the four lengths mod 4
    for (const code of ['A', 'AB', 'ABC', 'ABCD', 'MAIN']) {
      const good = cursorOf('/v1/stores', { code });
      assert.equal((await owner.get(`/v1/stores?cursor=${good}`)).status, 200, good);
      for (const bad of [`${good}x`, `${good}xx`, `${good}=`, `${good}==`, good.replace(/-/g, '+').replace(/_/g, '/') + (good.includes('-') || good.includes('_') ? '' : '+')]) {
        const response = await owner.get(`/v1/stores?cursor=${encodeURIComponent(bad)}`);
        assert.equal(response.status, 400, `${bad} (from ${good}) → ${response.status}`);
      }
    }
  });
});
