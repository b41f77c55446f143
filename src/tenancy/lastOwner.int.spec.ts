import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * A tenant keeps an owner token of every store: revoking its last one left
 * nobody able to issue an owner token again (and, once the admins were gone,
 * any token at all) — the operator only creates tenants.
 */
describe("revoking the tenant's last owner token of every store", () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  const issueOwner = async (issuer: ApiClient, storeIds?: string[]) => {
    const response = await issuer.post('/v1/tokens', { name: `owner-${Math.random().toString(36).slice(2, 7)}`, role: 'owner', ...(storeIds ? { store_ids: storeIds } : {}) });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return { id: response.body.id as string, client: t.client(response.body.token as string) };
  };
  /** The tenant's first owner token (POST /v1/tenants answers the token, not its id). */
  const firstOwnerId = async (tenantId: string): Promise<string> =>
    (await t.admin.query<{ id: string }>(`SELECT id FROM api_tokens WHERE tenant_id = $1 AND role = 'owner' ORDER BY created_at LIMIT 1`, [tenantId])).rows[0]!.id;
  const unrevokedOwners = async (tenantId: string) =>
    (
      await t.admin.query<{ id: string }>(`SELECT id FROM api_tokens WHERE tenant_id = $1 AND role = 'owner' AND store_ids IS NULL AND revoked_at IS NULL ORDER BY id`, [
        tenantId,
      ])
    ).rows.map((row) => row.id);
  const eventCount = async (tenantId: string) => Number((await t.admin.query(`SELECT count(*) FROM events WHERE tenant_id = $1`, [tenantId])).rows[0].count);

  it('is 409 conflict, nothing written, the token still works — also with owner tokens limited to some stores left; with another owner token of every store, it is revoked', async () => {
    // Given a tenant whose only owner token of every store is its first, and an owner token limited to one store
    const { owner, tenantId } = await t.newTenant();
    const firstId = await firstOwnerId(tenantId);
    const store = (await owner.post('/v1/stores', { code: 'LO1', name: 'One' })).body.id as string;
    const limited = await issueOwner(owner, [store]);
    const events = await eventCount(tenantId);
    // When it revokes itself
    const refused = await owner.post(`/v1/tokens/${firstId}/revoke`, {});
    // Then it is refused, and nothing changed
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'conflict');
    assert.match(refused.body.detail, /last owner token of every store/);
    assert.deepEqual(await unrevokedOwners(tenantId), [firstId]);
    assert.equal(await eventCount(tenantId), events);
    assert.equal((await owner.get('/v1/stores')).status, 200);
    // The store-limited owner token may be revoked: the tenant keeps its owner of every store
    assert.equal((await owner.post(`/v1/tokens/${limited.id}/revoke`, {})).status, 200);
    // With a second owner token of every store, the first can go
    const second = await issueOwner(owner);
    assert.equal((await second.client.post(`/v1/tokens/${firstId}/revoke`, {})).status, 200);
    assert.deepEqual(await unrevokedOwners(tenantId), [second.id]);
    assert.equal((await owner.get('/v1/stores')).status, 401);
    // …and now the second is the last one
    assert.equal((await second.client.post(`/v1/tokens/${second.id}/revoke`, {})).status, 409);
    assert.deepEqual(await unrevokedOwners(tenantId), [second.id]);
  });

  it('two owners revoking each other at once: one is revoked and the other refused, never both — five rounds, rows checked', async () => {
    for (let round = 0; round < 5; round++) {
      // Given a tenant with exactly two owner tokens of every store
      const { owner: a, tenantId } = await t.newTenant();
      const aId = await firstOwnerId(tenantId);
      const b = await issueOwner(a);
      const events = await eventCount(tenantId);
      // When each revokes the other at the same moment
      const [aRevokesB, bRevokesA] = await Promise.all([a.post(`/v1/tokens/${b.id}/revoke`, {}), b.client.post(`/v1/tokens/${aId}/revoke`, {})]);
      // Then exactly one revoke went through; the other is 409 (or 401 when its own token was revoked before it authenticated)
      const statuses = [aRevokesB.status, bRevokesA.status].sort();
      assert.ok(
        JSON.stringify(statuses) === '[200,409]' || JSON.stringify(statuses) === '[200,401]',
        `round ${round}: ${JSON.stringify([aRevokesB.status, aRevokesB.body, bRevokesA.status, bRevokesA.body])}`,
      );
      const left = await unrevokedOwners(tenantId);
      assert.equal(left.length, 1, `round ${round}: owners left ${JSON.stringify(left)}`);
      assert.deepEqual(left, [aRevokesB.status === 200 ? aId : b.id]);
      // one revoke: its operation's events only
      const revokedEvents = await t.admin.query(`SELECT count(*)::int AS n FROM events WHERE tenant_id = $1 AND type = 'token.revoked'`, [tenantId]);
      assert.equal(revokedEvents.rows[0].n, 1);
      assert.ok((await eventCount(tenantId)) > events);
    }
  });
});
