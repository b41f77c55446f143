import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * The settings' version is not in their body: the ETag of PATCH
 * /v1/tenant/settings is a header only, and a client that lost the answer and
 * retries with its Idempotency-Key must get it back to make its next change
 * conditional.
 */
describe('PATCH /v1/tenant/settings replayed: the same status, body and ETag', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  it('a replay carries the ETag of the first answer, also after later changes moved the settings on; it writes nothing', async () => {
    const etag = (await owner.get('/v1/tenant/settings')).headers.get('etag');
    assert.ok(etag);
    const first = await owner.patch('/v1/tenant/settings', { geofence_radius_m: 350 }, { idempotencyKey: 'settings-1', headers: { 'if-match': etag } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const firstEtag = first.headers.get('etag');
    assert.ok(firstEtag && firstEtag !== etag, `first ETag ${firstEtag}`);
    assert.equal(first.headers.get('idempotent-replayed'), null);

    const operations = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1`, [tenantId])).rows[0].n;
    const before = await operations();
    const replay = await owner.patch('/v1/tenant/settings', { geofence_radius_m: 350 }, { idempotencyKey: 'settings-1', headers: { 'if-match': etag } });
    assert.equal(replay.status, first.status);
    assert.deepEqual(replay.body, first.body);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.headers.get('etag'), firstEtag);
    assert.equal(await operations(), before, 'the replay wrote nothing');

    // The retried client continues with that ETag: it is the current version, so its next change applies.
    const next = await owner.patch('/v1/tenant/settings', { settlement_float: 5000 }, { idempotencyKey: 'settings-2', headers: { 'if-match': replay.headers.get('etag')! } });
    assert.equal(next.status, 200, JSON.stringify(next.body));
    const nextEtag = next.headers.get('etag');
    assert.notEqual(nextEtag, firstEtag);

    // Later, the first key still replays its own answer: the ETag it carried then (now stale: a change sent with it is 412).
    const late = await owner.patch('/v1/tenant/settings', { geofence_radius_m: 350 }, { idempotencyKey: 'settings-1', headers: { 'if-match': etag } });
    assert.equal(late.headers.get('etag'), firstEtag);
    assert.deepEqual(late.body, first.body);
    const stale = await owner.patch('/v1/tenant/settings', { settlement_float: 1 }, { headers: { 'if-match': firstEtag! } });
    assert.equal(stale.status, 412);
    assert.equal(stale.body.code, 'version_conflict');

    const stored = await t.admin.query(`SELECT key, response_etag FROM idempotency_keys WHERE tenant_id = $1 AND key LIKE 'settings-%' ORDER BY key`, [tenantId]);
    assert.deepEqual(stored.rows, [
      { key: 'settings-1', response_etag: firstEtag },
      { key: 'settings-2', response_etag: nextEtag },
    ]);
    const current = await owner.get('/v1/tenant/settings');
    assert.equal(current.headers.get('etag'), nextEtag);
    assert.deepEqual(current.body, { geofence_radius_m: 350, settlement_float: 5000 });
  });
});
