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

  it("a token creation or revocation replays to a caller who could make that request without the key: a store-limited admin of the token's stores gets it, an all-stores admin does not get an owner token's (404)", async () => {
    const northAdmin = await givenToken(t, owner, 'admin', [north]);
    const otherNorthAdmin = await givenToken(t, owner, 'admin', [north]);
    const southAdmin = await givenToken(t, owner, 'admin', [south]);
    const allStoresAdmin = await givenToken(t, owner, 'admin');

    // A store-limited admin's rotated token (same stores) retrying the creation of a north till under its key.
    const createKey = randomUUID();
    const tillBody = { name: 'north till 7', role: 'cashier', store_ids: [north] };
    const created = await northAdmin.post('/v1/tokens', tillBody, { idempotencyKey: createKey });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const rotated = await otherNorthAdmin.post('/v1/tokens', tillBody, { idempotencyKey: createKey });
    assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
    assert.equal(rotated.headers.get('idempotent-replayed'), 'true');
    assert.equal(rotated.body.id, created.body.id);
    assert.equal(rotated.body.token, null);
    assert.equal((await southAdmin.post('/v1/tokens', tillBody, { idempotencyKey: createKey })).status, 404);

    const revokeKey = randomUUID();
    assert.equal((await northAdmin.post(`/v1/tokens/${created.body.id}/revoke`, undefined, { idempotencyKey: revokeKey })).status, 200);
    const revokeReplay = await otherNorthAdmin.post(`/v1/tokens/${created.body.id}/revoke`, undefined, { idempotencyKey: revokeKey });
    assert.equal(revokeReplay.status, 200, JSON.stringify(revokeReplay.body));
    assert.equal(revokeReplay.headers.get('idempotent-replayed'), 'true');
    assert.equal((await southAdmin.post(`/v1/tokens/${created.body.id}/revoke`, undefined, { idempotencyKey: revokeKey })).status, 404);

    // Owner tokens are the owner's to issue and revoke: an all-stores admin is refused without the key, and is not handed them with it.
    const deputyKey = randomUUID();
    const deputyBody = { name: 'deputy owner', role: 'owner' };
    const deputy = await owner.post('/v1/tokens', deputyBody, { idempotencyKey: deputyKey });
    assert.equal(deputy.status, 201);
    assert.equal((await allStoresAdmin.post('/v1/tokens', deputyBody)).status, 403, 'without the key');
    const seen = await allStoresAdmin.post('/v1/tokens', deputyBody, { idempotencyKey: deputyKey });
    assert.equal(seen.status, 404, JSON.stringify(seen.body));
    const deputyRevokeKey = randomUUID();
    assert.equal((await owner.post(`/v1/tokens/${deputy.body.id}/revoke`, undefined, { idempotencyKey: deputyRevokeKey })).status, 200);
    assert.equal((await allStoresAdmin.post(`/v1/tokens/${deputy.body.id}/revoke`)).status, 403, 'without the key');
    const seenRevoke = await allStoresAdmin.post(`/v1/tokens/${deputy.body.id}/revoke`, undefined, { idempotencyKey: deputyRevokeKey });
    assert.equal(seenRevoke.status, 404, JSON.stringify(seenRevoke.body));
    const ownerReplay = await owner.post(`/v1/tokens/${deputy.body.id}/revoke`, undefined, { idempotencyKey: deputyRevokeKey });
    assert.equal(ownerReplay.status, 200);
    assert.equal(ownerReplay.headers.get('idempotent-replayed'), 'true');
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
