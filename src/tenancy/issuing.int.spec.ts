import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenStore, givenToken } from '../sales/testkit.js';

/**
 * What a token may issue, and tenant settings under concurrent edits: the
 * rows left behind, not only the answers.
 */
describe('issuing tokens and editing tenant settings', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let north: string;
  let south: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    north = await givenStore(owner, 'IS-N');
    south = await givenStore(owner, 'IS-S');
  });
  after(() => t.close());

  const tokens = async () =>
    (await t.admin.query<{ name: string; role: string; store_ids: string[] | null }>(`SELECT name, role, store_ids FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id`, [tenantId])).rows;

  it('a replay of a tenant\'s creation answers the tenant with token: null — the owner token is shown once — and creates nothing more', async () => {
    // Given a tenant created with an Idempotency-Key
    const key = `tenant-${randomUUID()}`;
    const name = `Replayed ${randomUUID().slice(0, 8)}`;
    const created = await t.operator.post('/v1/tenants', { name }, { idempotencyKey: key });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.body.token, /^sk_/);
    // When the operator sends it again (a lost answer)
    const replayed = await t.operator.post('/v1/tenants', { name }, { idempotencyKey: key });
    // Then the same tenant, without its secret
    assert.equal(replayed.status, 201);
    assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replayed.body, { tenant: created.body.tenant, token: null });
    const rows = await t.admin.query(
      `SELECT (SELECT count(*) FROM tenants WHERE name = $1)::int AS tenants,
              (SELECT count(*) FROM api_tokens WHERE tenant_id = $2)::int AS tokens,
              (SELECT count(*) FROM idempotency_keys WHERE key = $3 AND response_body::text LIKE '%sk\_%')::int AS stored_secrets`,
      [name, created.body.tenant.id, key],
    );
    assert.deepEqual(rows.rows[0], { tenants: 1, tokens: 1, stored_secrets: 0 });
    // and the token shown once still works
    assert.equal((await t.client(created.body.token).get('/v1/stores')).status, 200);
  });

  it('a store-limited admin issues tokens within its own stores only: every broader one is 403 and no token row is written', async () => {
    const scopedAdmin = await givenToken(t, owner, 'admin', [north]);
    const before = await tokens();
    const broader = [
      { name: `all-${randomUUID()}`, role: 'cashier' }, // no store_ids: every store
      { name: `south-${randomUUID()}`, role: 'cashier', store_ids: [south] },
      { name: `both-${randomUUID()}`, role: 'manager', store_ids: [north, south] },
      { name: `south-caps-${randomUUID()}`, role: 'cashier', store_ids: [south.toUpperCase()] },
      { name: `foreign-${randomUUID()}`, role: 'cashier', store_ids: [randomUUID()] },
    ];
    for (const body of broader) {
      const refused = await scopedAdmin.post('/v1/tokens', body, { idempotencyKey: randomUUID() });
      assert.equal(refused.status, 403, `${JSON.stringify(body)}: ${refused.status} ${JSON.stringify(refused.body)}`);
      assert.equal(refused.body.code, 'forbidden');
    }
    const owners = await scopedAdmin.post('/v1/tokens', { name: 'second owner', role: 'owner', store_ids: [north] });
    assert.equal(owners.status, 403, 'only an owner issues owner tokens');
    assert.deepEqual(await tokens(), before, 'no token row written by a refused issue');
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM idempotency_keys WHERE tenant_id = $1`, [tenantId])).rows[0].n, 0);

    // Within its store (named in capitals too): issued, stored lowercase, and limited to it.
    const inside = await scopedAdmin.post('/v1/tokens', { name: 'north till', role: 'cashier', store_ids: [north.toUpperCase()] });
    assert.equal(inside.status, 201, JSON.stringify(inside.body));
    assert.deepEqual(inside.body.store_ids, [north]);
    const till = t.client(inside.body.token);
    assert.equal((await till.get(`/v1/stores/${north}`)).status, 200);
    assert.equal((await till.get(`/v1/stores/${south}`)).status, 404);
    assert.deepEqual((await tokens()).at(-1), { name: 'north till', role: 'cashier', store_ids: [north] });
  });

  it('an all-stores admin may not issue an owner token (403, nothing written); an owner may', async () => {
    const admin = await givenToken(t, owner, 'admin');
    const before = await tokens();
    const refused = await admin.post('/v1/tokens', { name: 'usurper', role: 'owner' });
    assert.equal(refused.status, 403);
    assert.deepEqual(await tokens(), before);
    assert.equal((await owner.post('/v1/tokens', { name: 'co-owner', role: 'owner' })).status, 201);
  });

  it('concurrent PATCHes with the same If-Match: exactly one applies, the others are 412 and change nothing (no lost update)', async () => {
    const read = await owner.get('/v1/tenant/settings');
    const etag = read.headers.get('etag')!;
    const version = Number(etag.replace(/"/g, ''));
    const admins = await Promise.all(Array.from({ length: 8 }, () => givenToken(t, owner, 'admin')));
    const answers = await Promise.all(
      admins.map((admin, i) => admin.patch('/v1/tenant/settings', { geofence_radius_m: 300 + i }, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() })),
    );
    const won = answers.flatMap((answer, i) => (answer.status === 200 ? [i] : []));
    assert.equal(won.length, 1, `statuses: ${answers.map((a) => a.status)}`);
    for (const answer of answers.filter((a) => a.status !== 200)) {
      assert.equal(answer.status, 412, JSON.stringify(answer.body));
      assert.equal(answer.body.code, 'version_conflict');
      assert.equal(answer.body.current_version, version + 1);
    }
    const { rows } = await t.admin.query(`SELECT settings, settings_version FROM tenants WHERE id = $1`, [tenantId]);
    assert.equal(rows[0].settings_version, version + 1);
    assert.equal(rows[0].settings.geofence_radius_m, 300 + won[0]!);
    const events = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'tenant.settings.update' AND created_at >= now() - interval '1 hour'`, [tenantId]);
    assert.equal(events.rows[0].n, 1, 'one operation for the one change');
  });

  it('a settings change does not wait for the commands of the tenant in flight (each holds its tenant row KEY SHARE through its operation row)', async () => {
    // A command in flight (say a sale waiting for a stock row) holds the tenant row FOR KEY SHARE
    // through its operation row's foreign key, as this transaction does.
    const inFlight = await t.admin.connect();
    try {
      await inFlight.query('BEGIN');
      await inFlight.query(`SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE`, [tenantId]);
      const changed = await owner.patch('/v1/tenant/settings', { geofence_radius_m: 4321 });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      const { rows } = await t.admin.query(`SELECT settings ->> 'geofence_radius_m' AS radius FROM tenants WHERE id = $1`, [tenantId]);
      assert.equal(rows[0].radius, '4321');
    } finally {
      await inFlight.query('ROLLBACK');
      inFlight.release();
    }
  });

  it('concurrent PATCHes of different settings without If-Match are merged: none is lost', async () => {
    const before = (await t.admin.query(`SELECT settings_version FROM tenants WHERE id = $1`, [tenantId])).rows[0].settings_version as number;
    const changes = [{ settlement_float: 12_345 }, { bulk_sale_threshold: 50_000 }, { geofence_radius_m: 777 }];
    const answers = await Promise.all(changes.map((change) => owner.patch('/v1/tenant/settings', change)));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200]);
    const { rows } = await t.admin.query(`SELECT settings, settings_version FROM tenants WHERE id = $1`, [tenantId]);
    assert.deepEqual(rows[0].settings, { settlement_float: 12_345, bulk_sale_threshold: 50_000, geofence_radius_m: 777 });
    assert.equal(rows[0].settings_version, before + 3);
  });
});
