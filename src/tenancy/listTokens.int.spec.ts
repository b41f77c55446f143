import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

describe('GET /v1/tokens: the tokens an owner or admin may revoke', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let north: string;
  let south: string;
  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    north = (await owner.post('/v1/stores', { code: 'N', name: 'North' })).body.id;
    south = (await owner.post('/v1/stores', { code: 'S', name: 'South' })).body.id;
  });
  after(() => t.close());

  const issue = async (issuer: ApiClient, name: string, role: string, storeIds?: string[]) => {
    const response = await issuer.post('/v1/tokens', { name, role, ...(storeIds ? { store_ids: storeIds } : {}) });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return { id: response.body.id as string, token: response.body.token as string, client: t.client(response.body.token) };
  };
  /** Every page of the list, walked with `limit`. */
  const walk = async (client: ApiClient, limit: number) => {
    const items: Array<Record<string, unknown>> = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: Array<Record<string, unknown>>; next_cursor: string | null } } = await client.get(
        `/v1/tokens?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      assert.equal(page.status, 200, JSON.stringify(page.body));
      items.push(...page.body.items);
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    return items;
  };

  it('lists every token in issue order, revoked ones with revoked_at, never the token or its hash; pages walk it whole; another tenant sees none of them', async () => {
    const cashier = await issue(owner, 'till 1', 'cashier', [north]);
    const admin = await issue(owner, 'back office', 'admin');
    assert.equal((await owner.post(`/v1/tokens/${cashier.id}/revoke`, {})).status, 200);
    const rows = (
      await t.admin.query(`SELECT id, name, role, store_ids, created_at, revoked_at FROM api_tokens WHERE tenant_id = $1 ORDER BY id`, [tenantId])
    ).rows;
    const whole = await walk(owner, 50);
    assert.deepEqual(
      whole,
      rows.map((row) => ({
        id: row.id,
        name: row.name,
        role: row.role,
        store_ids: row.store_ids,
        created_at: row.created_at.toISOString(),
        revoked_at: row.revoked_at?.toISOString() ?? null,
      })),
    );
    assert.deepEqual(
      whole.map((token) => [token.name, token.role, token.revoked_at !== null]),
      [
        [whole[0]!.name, 'owner', false],
        ['till 1', 'cashier', true],
        ['back office', 'admin', false],
      ],
    );
    assert.ok(!/token_hash|"token"/.test(JSON.stringify(whole)), 'neither the token nor its hash is listed');
    assert.ok(!JSON.stringify(whole).includes(cashier.token) && !JSON.stringify(whole).includes(admin.token));
    assert.deepEqual(await walk(admin.client, 1), whole, 'an admin sees the same list, one token a page');
    const other = await t.newTenant();
    const theirs = await walk(other.owner, 50);
    assert.equal(theirs.length, 1);
    assert.ok(!whole.some((token) => token.id === theirs[0]!.id));
  });

  it('a caller limited to some stores sees only the tokens within them — those it may revoke; a role that may not issue tokens is 403; a cursor of another list is 400', async () => {
    const scopedAdmin = await issue(owner, 'north admin', 'admin', [north]);
    const northTill = await issue(owner, 'north till', 'cashier', [north]);
    const southTill = await issue(owner, 'south till', 'cashier', [south]);
    const bothTill = await issue(owner, 'both till', 'cashier', [north, south]);
    const listed = (await walk(scopedAdmin.client, 50)).map((token) => token.id);
    assert.ok(listed.includes(scopedAdmin.id) && listed.includes(northTill.id), JSON.stringify(listed));
    assert.ok(!listed.includes(southTill.id) && !listed.includes(bothTill.id), 'a token of another store is not listed to it');
    const ownerTokenIds = (await t.admin.query(`SELECT id FROM api_tokens WHERE tenant_id = $1 AND store_ids IS NULL`, [tenantId])).rows.map((row) => row.id);
    assert.ok(!listed.some((id) => ownerTokenIds.includes(id)), 'nor a token of every store');
    // every token it lists, it may revoke; one it does not list is 404 to it
    assert.equal((await scopedAdmin.client.post(`/v1/tokens/${southTill.id}/revoke`, {})).status, 404);
    assert.equal((await scopedAdmin.client.post(`/v1/tokens/${northTill.id}/revoke`, {})).status, 200);

    const refused = await northTill.client.get('/v1/tokens');
    assert.equal(refused.status, 401, 'the revoked till is not authenticated');
    const manager = await issue(owner, 'manager', 'manager');
    const forbidden = await manager.client.get('/v1/tokens');
    assert.equal(forbidden.status, 403, JSON.stringify(forbidden.body));
    const storesCursor = (await owner.get('/v1/stores?limit=1')).body.next_cursor as string;
    const badCursor = await owner.get(`/v1/tokens?cursor=${encodeURIComponent(storesCursor)}`);
    assert.equal(badCursor.status, 400);
    assert.equal(badCursor.body.errors[0].path, '/querystring/cursor');
  });
});
