import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';

/**
 * Idempotency keys are per tenant, so a replay must not show a caller what
 * the same request without the key would refuse it (404): a record outside
 * its stores. Commands whose store is only known inside them replay only to
 * the token that made them or to a caller with the record's store in scope.
 */
describe('replays stay within the caller’s stores', () => {
  let t: TestApp;
  let owner: ApiClient;
  let north: string;
  let south: string;
  let elsewhere: string;
  let flour: string;

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    north = await givenStore(owner, 'RS-N');
    south = await givenStore(owner, 'RS-S');
    elsewhere = await givenStore(owner, 'RS-E');
    flour = await givenSku(owner, 'RS-FLOUR', 'kg');
    await givenStock(owner, north, [{ sku_id: flour, quantity: 10_000 }]);
  });
  after(() => t.close());

  it('a transfer request replayed by a token with neither store in scope is 404, as it is without the key; the maker gets the replay', async () => {
    const northManager = await givenToken(t, owner, 'manager', [north]);
    const outsider = await givenToken(t, owner, 'manager', [elsewhere]);
    const body = { source_store_id: north, destination_store_id: south, items: [{ sku_id: flour, quantity: 500 }] };
    const key = randomUUID();
    const original = await northManager.post('/v1/transfers', body, { idempotencyKey: key });
    assert.equal(original.status, 201, JSON.stringify(original.body));
    assert.equal((await outsider.post('/v1/transfers', body)).status, 404);
    const replay = await outsider.post('/v1/transfers', body, { idempotencyKey: key });
    assert.equal(replay.status, 404, JSON.stringify(replay.body));
    const again = await northManager.post('/v1/transfers', body, { idempotencyKey: key });
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.id, original.body.id);
  });

  it('a token revoke or creation replayed by a store-limited admin is 404; the token that made it, or an all-stores one, gets the replay', async () => {
    const scopedAdmin = await givenToken(t, owner, 'admin', [north]);
    const till = (await owner.post('/v1/tokens', { name: 'head-office till', role: 'cashier' })).body;
    const revokeKey = randomUUID();
    const revoked = await owner.post(`/v1/tokens/${till.id}/revoke`, undefined, { idempotencyKey: revokeKey });
    assert.equal(revoked.status, 200);
    assert.equal((await scopedAdmin.post(`/v1/tokens/${till.id}/revoke`)).status, 404, 'without the key');
    const leaked = await scopedAdmin.post(`/v1/tokens/${till.id}/revoke`, undefined, { idempotencyKey: revokeKey });
    assert.equal(leaked.status, 404, JSON.stringify(leaked.body));
    const replay = await owner.post(`/v1/tokens/${till.id}/revoke`, undefined, { idempotencyKey: revokeKey });
    assert.equal(replay.status, 200);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');

    const createKey = randomUUID();
    const tokenBody = { name: 'spare till', role: 'cashier' };
    const created = await owner.post('/v1/tokens', tokenBody, { idempotencyKey: createKey });
    assert.equal(created.status, 201);
    const seen = await scopedAdmin.post('/v1/tokens', tokenBody, { idempotencyKey: createKey });
    assert.equal(seen.status, 404, JSON.stringify(seen.body));
    const ownReplay = await owner.post('/v1/tokens', tokenBody, { idempotencyKey: createKey });
    assert.equal(ownReplay.status, 201);
    assert.equal(ownReplay.headers.get('idempotent-replayed'), 'true');
    assert.equal(ownReplay.body.token, null, 'the secret is shown once, never replayed');
  });

  it('tenant settings apply to every store: a store-limited admin may not change them (403, nothing changed); an all-stores admin may', async () => {
    const scopedAdmin = await givenToken(t, owner, 'admin', [north]);
    const before = (await owner.get('/v1/tenant/settings')).body;
    const refused = await scopedAdmin.patch('/v1/tenant/settings', { settlement_float: 1_000_000 });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'forbidden');
    assert.deepEqual((await owner.get('/v1/tenant/settings')).body, before);
    const allStoresAdmin = await givenToken(t, owner, 'admin');
    assert.equal((await allStoresAdmin.patch('/v1/tenant/settings', { settlement_float: 5_000 })).status, 200);
    assert.equal((await owner.get('/v1/tenant/settings')).body.settlement_float, 5_000);
  });
});
