import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { Authenticator, hashToken } from '../core/auth.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../core/logger.js';
import { buildApp } from '../http/app.js';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';


/**
 * Holds `authenticator`'s next lookup of `token` between its database read
 * and its cache write (the afterLookup seam, removed once used): `read`
 * resolves when the lookup has read the token; `release()` lets it go on.
 */
function holdNextLookup(authenticator: Authenticator, token: string): { read: Promise<void>; release: () => void } {
  const hash = hashToken(token);
  let readDone!: () => void;
  const read = new Promise<void>((resolve) => (readDone = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  authenticator.afterLookup = async (looked) => {
    if (!looked.equals(hash)) return;
    authenticator.afterLookup = undefined;
    readDone();
    await released;
  };
  return { read, release };
}

describe('revoking API tokens', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store1: string;
  let store2: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store1 = (await owner.post('/v1/stores', { code: 'T1', name: 'One' })).body.id;
    store2 = (await owner.post('/v1/stores', { code: 'T2', name: 'Two' })).body.id;
  });
  after(() => t.close());

  const issue = async (issuer: ApiClient, role: string, storeIds?: string[]) => {
    const response = await issuer.post('/v1/tokens', { name: `${role}-${Math.random().toString(36).slice(2, 7)}`, role, ...(storeIds ? { store_ids: storeIds } : {}) });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return { id: response.body.id as string, token: response.body.token as string, client: t.client(response.body.token) };
  };
  const events = async () => Number((await t.admin.query(`SELECT count(*) FROM events WHERE tenant_id = $1`, [tenantId])).rows[0].count);

  it('a revoked token stops authenticating at once in this process; revoking again returns it, nothing written', async () => {
    const cashier = await issue(owner, 'cashier');
    assert.equal((await cashier.client.get('/v1/stores')).status, 200);
    const revoked = await owner.post(`/v1/tokens/${cashier.id}/revoke`, {});
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(revoked.body.id, cashier.id);
    assert.ok(revoked.body.revoked_at);
    assert.equal((await cashier.client.get('/v1/stores')).status, 401);
    const before = await events();
    const again = await owner.post(`/v1/tokens/${cashier.id}/revoke`, {});
    assert.equal(again.status, 200);
    assert.equal(again.body.revoked_at, revoked.body.revoked_at);
    assert.equal(await events(), before);
    assert.ok(!JSON.stringify(revoked.body).includes('token_hash'), 'the hash is not returned');
  });

  it('revoking a revoked token keeps the request\'s key: a store-limited issuer replays its own answer, and the key is refused for another token', async () => {
    const admin = await issue(owner, 'admin', [store1]);
    const [cashier, other] = [await issue(owner, 'cashier', [store1]), await issue(owner, 'cashier', [store1])];
    const revoked = await owner.post(`/v1/tokens/${cashier.id}/revoke`, {});
    assert.equal(revoked.status, 200);
    const key = randomUUID();
    const before = await events();
    const again = await admin.client.post(`/v1/tokens/${cashier.id}/revoke`, {}, { idempotencyKey: key });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.revoked_at, revoked.body.revoked_at);
    // The owner's revoke did it (its operation has no store); the store-limited admin sent this request, and sees its replay.
    const replay = await admin.client.post(`/v1/tokens/${cashier.id}/revoke`, {}, { idempotencyKey: key });
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, again.body);
    const reused = await admin.client.post(`/v1/tokens/${other.id}/revoke`, {}, { idempotencyKey: key });
    assert.equal(reused.status, 422);
    assert.equal(reused.body.code, 'idempotency_key_reused');
    assert.equal((await other.client.get('/v1/stores')).status, 200, 'the other token was not revoked');
    assert.equal(await events(), before);
  });

  it('a revoke answered by another API process — the replay of a revoke, or revoking a revoked token — stops the token there at once too', async () => {
    // A second API process on the same database, with its own token cache.
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), port: 0, rateLimitPerMinute: 1_000_000 };
    const second = await buildApp({ config, pool: t.appPool, db: t.db, logger: createLogger('silent'), authenticator: new Authenticator(t.db) });
    try {
      const secondUrl = await second.listen({ port: 0, host: '127.0.0.1' });
      const { token: ownerToken } = await t.newTenant();
      const firstOwner = t.client(ownerToken);
      const secondOwner = new ApiClient(secondUrl, ownerToken);
      const [replayed, repeated] = [await issue(firstOwner, 'cashier'), await issue(firstOwner, 'cashier')];
      const onSecond = (token: string) => new ApiClient(secondUrl, token);
      // The second process has both tokens cached as valid.
      for (const cashier of [replayed, repeated]) assert.equal((await onSecond(cashier.token).get('/v1/stores')).status, 200);

      // The first process revokes; the answer is lost and the client retries the same request on the second.
      const key = randomUUID();
      assert.equal((await firstOwner.post(`/v1/tokens/${replayed.id}/revoke`, undefined, { idempotencyKey: key })).status, 200);
      const replay = await secondOwner.post(`/v1/tokens/${replayed.id.toUpperCase()}/revoke`, undefined, { idempotencyKey: key });
      assert.equal(replay.status, 200, JSON.stringify(replay.body));
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.equal((await onSecond(replayed.token).get('/v1/stores')).status, 401, 'the replay evicted the token from the second cache');

      // Revoked through the first process, then revoked again (no key) through the second.
      assert.equal((await firstOwner.post(`/v1/tokens/${repeated.id}/revoke`)).status, 200);
      assert.equal((await secondOwner.post(`/v1/tokens/${repeated.id}/revoke`)).status, 200);
      assert.equal((await onSecond(repeated.token).get('/v1/stores')).status, 401, 'revoking again evicted it too');
    } finally {
      await second.close();
    }
  });

  it('a lookup that read the token before a revoke committed does not cache it past the revoke: the next request is 401 and writes nothing', async () => {
    const admin = await issue(owner, 'admin');
    // Hold this token's first lookup between its database read and its cache write.
    const { read, release } = holdNextLookup(t.authenticator, admin.token);
    try {
      const inFlight = admin.client.get('/v1/stores');
      await read; // the lookup has read the token, still valid
      const revoked = await owner.post(`/v1/tokens/${admin.id}/revoke`, {});
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      release(); // only now does that lookup write the cache
      assert.equal((await inFlight).status, 200, 'the request in flight read the token before the revoke committed');
    } finally {
      t.authenticator.afterLookup = undefined;
      release();
    }
    const row = await t.admin.query(`SELECT revoked_at FROM api_tokens WHERE tenant_id = $1 AND id = $2`, [tenantId, admin.id]);
    assert.ok(row.rows[0].revoked_at, 'the revoke committed');
    const code = `R${Math.random().toString(36).slice(2, 8)}`;
    const after = await admin.client.post('/v1/stores', { code, name: 'After the revoke' });
    assert.equal(after.status, 401, `a revoked token authenticated: ${after.status} ${JSON.stringify(after.body)}`);
    const stores = await t.admin.query(`SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1 AND code = $2`, [tenantId, code]);
    assert.equal(stores.rows[0].n, 0, 'nothing written by the revoked token');
    assert.equal((await admin.client.get('/v1/stores')).status, 401);
  });

  it('in another process, a lookup that read the token before the revoke committed is cached no longer than the cache lifetime counted from the read', async () => {
    const cashier = await issue(owner, 'cashier');
    const ttlMs = 1_000;
    const otherProcess = new Authenticator(t.db, ttlMs);
    const { read, release } = holdNextLookup(otherProcess, cashier.token);
    const inFlight = otherProcess.authenticate(cashier.token);
    await read; // read while the token is valid
    const revoked = await owner.post(`/v1/tokens/${cashier.id}/revoke`, {});
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    await sleep(ttlMs + 200); // longer than the cache lifetime since the revoke committed
    release();
    assert.equal((await inFlight)?.kind, 'token', 'the lookup in flight read the token before the revoke');
    assert.equal(await otherProcess.authenticate(cashier.token), null, 'a cache lifetime after the revoke, the other process refuses the token');
  });

  it('revoke takes no body: anything but none, {} or null is 400 validation_failed, the token stays valid and nothing is written', async () => {
    const cashier = await issue(owner, 'cashier');
    const before = await events();
    const refused = await owner.post(`/v1/tokens/${cashier.id}/revoke`, { reason: 'lost', revoke_all_tokens: true });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(refused.body.code, 'validation_failed');
    const unknown = refused.body.errors.filter((e: { message: string }) => e.message === 'is not a known field').map((e: { path: string }) => e.path);
    assert.deepEqual(unknown.sort(), ['/body/reason', '/body/revoke_all_tokens']);
    assert.equal((await owner.post(`/v1/tokens/${cashier.id}/revoke`, 'yes')).status, 400);
    assert.equal(await events(), before);
    assert.equal((await cashier.client.get('/v1/stores')).status, 200, 'still valid');
    const revoked = await owner.post(`/v1/tokens/${cashier.id}/revoke`, null);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal((await cashier.client.get('/v1/stores')).status, 401);
  });

  it('the issuer rules apply: only an owner revokes an owner token; a store-limited admin only tokens within its stores; another tenant\'s token is 404', async () => {
    const secondOwner = await issue(owner, 'owner');
    const admin = await issue(owner, 'admin');
    const refused = await admin.client.post(`/v1/tokens/${secondOwner.id}/revoke`, {});
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal((await secondOwner.client.get('/v1/stores')).status, 200, 'still valid');

    const scopedAdmin = await issue(owner, 'admin', [store1]);
    const inside = await issue(owner, 'cashier', [store1]);
    const outside = await issue(owner, 'cashier', [store2]);
    const everywhere = await issue(owner, 'cashier');
    assert.equal((await scopedAdmin.client.post(`/v1/tokens/${outside.id}/revoke`, {})).status, 404);
    assert.equal((await scopedAdmin.client.post(`/v1/tokens/${everywhere.id}/revoke`, {})).status, 404);
    assert.equal((await scopedAdmin.client.post(`/v1/tokens/${inside.id}/revoke`, {})).status, 200);
    assert.equal((await outside.client.get('/v1/stores')).status, 200, 'untouched');

    const other = await t.newTenant('Other');
    const foreign = await issue(other.owner, 'cashier');
    assert.equal((await owner.post(`/v1/tokens/${foreign.id}/revoke`, {})).status, 404);
    assert.equal((await foreign.client.get('/v1/stores')).status, 200);
    // a cashier may not revoke tokens at all
    assert.equal((await everywhere.client.post(`/v1/tokens/${inside.id}/revoke`, {})).status, 403);
  });

  it('a revoked admin token that another API process still has cached issues and revokes no token: 401, nothing written — a token it minted would outlive its revoke', async () => {
    const second = await startSecondApi(t);
    try {
      const admin = await issue(owner, 'admin');
      const victim = await issue(owner, 'cashier');
      const onSecond = second.client(admin.token);
      assert.equal((await onSecond.get('/v1/tokens')).status, 200, 'the second process has the admin token cached as valid');
      assert.equal((await owner.post(`/v1/tokens/${admin.id}/revoke`)).status, 200);
      const tokensBefore = (await t.admin.query(`SELECT count(*)::int AS n FROM api_tokens WHERE tenant_id = $1`, [tenantId])).rows[0].n;
      const before = await events();
      const minted = await onSecond.post('/v1/tokens', { name: 'backdoor', role: 'admin' });
      assert.equal(minted.status, 401, `a revoked token issued a token: ${minted.status} ${JSON.stringify(minted.body)}`);
      assert.equal(minted.body.code, 'unauthorized');
      assert.equal(minted.headers.get('www-authenticate'), 'Bearer realm="storekeep"');
      const revoked = await onSecond.post(`/v1/tokens/${victim.id}/revoke`);
      assert.equal(revoked.status, 401, `a revoked token revoked a token: ${revoked.status} ${JSON.stringify(revoked.body)}`);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM api_tokens WHERE tenant_id = $1`, [tenantId])).rows[0].n, tokensBefore);
      assert.equal(await events(), before, 'nothing written');
      assert.equal((await victim.client.get('/v1/stores')).status, 200, 'the other token still works');
    } finally {
      await second.close();
    }
  });

  it('a token issue whose authentication read the admin token before its revoke committed issues nothing: 401', async () => {
    const admin = await issue(owner, 'admin');
    const { read, release } = holdNextLookup(t.authenticator, admin.token);
    let minted;
    try {
      const inFlight = admin.client.post('/v1/tokens', { name: 'minted in flight', role: 'admin' });
      await read; // authenticated with the token still valid
      assert.equal((await owner.post(`/v1/tokens/${admin.id}/revoke`)).status, 200);
      release();
      minted = await inFlight;
    } finally {
      t.authenticator.afterLookup = undefined;
      release();
    }
    assert.equal(minted.status, 401, `issued after the issuer's revoke committed: ${minted.status} ${JSON.stringify(minted.body)}`);
    const rows = await t.admin.query(`SELECT count(*)::int AS n FROM api_tokens WHERE tenant_id = $1 AND name = 'minted in flight'`, [tenantId]);
    assert.equal(rows.rows[0].n, 0);
  });

  it('an admin issuing tokens while it is revoked: each answer matches the rows — a 201 its token, a 401 none — and nothing is issued once the revoke is answered (five rounds)', async () => {
    const second = await startSecondApi(t);
    try {
      for (let round = 0; round < 5; round++) {
        const admin = await issue(owner, 'admin');
        const onSecond = second.client(admin.token);
        assert.equal((await onSecond.get('/v1/tokens')).status, 200, 'cached as valid in the second process');
        const names = Array.from({ length: 6 }, (_, index) => `race-${round}-${index}-${randomUUID().slice(0, 6)}`);
        const [revoked, ...issued] = await Promise.all([
          owner.post(`/v1/tokens/${admin.id}/revoke`),
          ...names.map((name, index) => (index % 2 === 0 ? admin.client : onSecond).post('/v1/tokens', { name, role: 'cashier' })),
        ]);
        assert.equal(revoked!.status, 200, JSON.stringify(revoked!.body));
        const late = await onSecond.post('/v1/tokens', { name: `late-${round}`, role: 'cashier' });
        assert.equal(late.status, 401, `round ${round}: issued after the revoke was answered: ${JSON.stringify(late.body)}`);
        const rows = await t.admin.query<{ name: string; id: string }>(`SELECT name, id FROM api_tokens WHERE tenant_id = $1 AND (name = ANY($2) OR name = $3)`, [tenantId, names, `late-${round}`]);
        const written = new Map(rows.rows.map((row) => [row.name, row.id]));
        issued.forEach((response, index) => {
          assert.ok([201, 401].includes(response.status), `round ${round}: ${response.status} ${JSON.stringify(response.body)}`);
          assert.equal(written.get(names[index]!), response.status === 201 ? response.body.id : undefined, `round ${round}: ${names[index]} answered ${response.status}`);
        });
        assert.equal(written.has(`late-${round}`), false);
      }
    } finally {
      await second.close();
    }
  });
});
