import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

describe('idempotency keys', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const count = async (table: string) =>
    Number((await t.admin.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [tenantId])).rows[0].n);

  it('50 concurrent requests with one key have one effect; the others replay it or are told it is in flight', async () => {
    // Given a key never used
    const key = 'concurrent-store-1';
    const storesBefore = await count('stores');
    const opsBefore = await count('operations');

    // When 50 clients send the same request with it at once
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => owner.post('/v1/stores', { code: 'S-CONC', name: 'Concurrent' }, { idempotencyKey: key })),
    );

    // Then exactly one store, one operation and one idempotency record exist
    assert.equal(await count('stores'), storesBefore + 1);
    assert.equal(await count('operations'), opsBefore + 1);
    const records = await t.admin.query('SELECT op_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2', [tenantId, key]);
    assert.equal(records.rowCount, 1);

    const created = responses.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') !== 'true');
    const replayed = responses.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') === 'true');
    const inFlight = responses.filter((r) => r.status === 409);
    assert.equal(created.length, 1, 'one request did the work');
    assert.equal(created.length + replayed.length + inFlight.length, 50, `unexpected statuses ${responses.map((r) => r.status)}`);
    for (const r of inFlight) assert.equal(r.body.code, 'idempotency_key_in_flight');
    for (const r of replayed) assert.deepEqual(r.body, created[0]!.body);
    assert.equal(records.rows[0].op_id, created[0]!.body.op_id);
  });

  it('one key raced by two different "already done" requests: each answer is the one its own retry gets (no 200 then 422)', async () => {
    // Given two revoked tokens: revoking either again is answered "already done" (AlreadyDone)
    const issue = async (name: string) => (await owner.post('/v1/tokens', { name, role: 'cashier' })).body.id as string;
    const [x, y] = [await issue('race-x'), await issue('race-y')];
    for (const id of [x, y]) assert.equal((await owner.post(`/v1/tokens/${id}/revoke`, {})).status, 200);

    // When, for each of many keys at once (more requests than database connections), clients race with
    // ONE key on two different requests (revoke x, revoke y)
    const paths = Array.from({ length: 12 }, (_, i) => `/v1/tokens/${i % 2 === 0 ? x : y}/revoke`);
    const rounds = await Promise.all(
      Array.from({ length: 20 }, (_, round) => Promise.all(paths.map((path) => owner.post(path, {}, { idempotencyKey: `already-done-race-${round}` })))),
    );
    for (const [round, responses] of rounds.entries()) {
      const key = `already-done-race-${round}`;

      // Then the key holds one request's answer; only that request was answered 200
      const stored = await t.admin.query('SELECT response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2', [tenantId, key]);
      assert.equal(stored.rowCount, 1);
      const holder = `/v1/tokens/${stored.rows[0].response_body.id}/revoke`;
      for (const [i, response] of responses.entries()) {
        if (response.status === 200) {
          assert.equal(paths[i], holder, `round ${round}: a 200 for ${paths[i]} while the key holds ${holder}`);
          // and its own retry with the key gets the same answer
          const retry = await owner.post(paths[i]!, {}, { idempotencyKey: key });
          assert.equal(retry.status, 200, `round ${round}: answered 200, its retry ${retry.status} ${JSON.stringify(retry.body)}`);
          assert.deepEqual(retry.body, response.body);
        } else {
          assert.ok(
            (response.status === 409 && response.body.code === 'idempotency_key_in_flight') || (response.status === 422 && response.body.code === 'idempotency_key_reused' && paths[i] !== holder),
            `round ${round}: unexpected ${response.status} ${JSON.stringify(response.body)} for ${paths[i]}`,
          );
        }
      }
    }
  });

  it('replays the identical status and body, with Idempotent-Replayed: true', async () => {
    const first = await owner.post('/v1/skus', { code: 'SKU-R', name: 'Rice', unit: 'kg', price: 250 }, { idempotencyKey: 'sku-r' });
    const second = await owner.post('/v1/skus', { code: 'SKU-R', name: 'Rice', unit: 'kg', price: 250 }, { idempotencyKey: 'sku-r' });
    assert.equal(first.status, 201);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    assert.equal(second.status, 201);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(second.body, first.body);
    // Keys order in the body does not change the fingerprint.
    const third = await owner.post('/v1/skus', { price: 250, unit: 'kg', name: 'Rice', code: 'SKU-R' }, { idempotencyKey: 'sku-r' });
    assert.equal(third.status, 201);
    assert.deepEqual(third.body, first.body);
    assert.equal(Number((await t.admin.query(`SELECT count(*) FROM skus WHERE tenant_id = $1 AND code = 'SKU-R'`, [tenantId])).rows[0].count), 1);
  });

  it('the same key with a different body is 422 idempotency_key_reused and writes nothing', async () => {
    await owner.post('/v1/stores', { code: 'S-A', name: 'A' }, { idempotencyKey: 'reuse-me' });
    const opsBefore = await count('operations');
    const storesBefore = await count('stores');
    const response = await owner.post('/v1/stores', { code: 'S-B', name: 'B' }, { idempotencyKey: 'reuse-me' });
    assert.equal(response.status, 422);
    assert.equal(response.body.code, 'idempotency_key_reused');
    assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.equal(await count('operations'), opsBefore);
    assert.equal(await count('stores'), storesBefore);
  });

  it('the same key on another path is a different request (422)', async () => {
    await owner.post('/v1/stores', { code: 'S-P', name: 'P' }, { idempotencyKey: 'path-key' });
    const response = await owner.post('/v1/skus', { code: 'S-P', name: 'P', unit: 'piece', price: 1 }, { idempotencyKey: 'path-key' });
    assert.equal(response.status, 422);
  });

  it('keys are scoped per tenant', async () => {
    const other = await t.newTenant();
    const a = await owner.post('/v1/stores', { code: 'S-T', name: 'T' }, { idempotencyKey: 'shared-key' });
    const b = await other.owner.post('/v1/stores', { code: 'S-T', name: 'T' }, { idempotencyKey: 'shared-key' });
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    assert.equal(b.headers.get('idempotent-replayed'), null);
    assert.notEqual(a.body.id, b.body.id);
  });

  it('a refused request is not stored: retrying it with the same key is evaluated again', async () => {
    const store = (await owner.post('/v1/stores', { code: 'S-REF', name: 'Ref' })).body;
    const sku = (await owner.post('/v1/skus', { code: 'SKU-REF', name: 'Ref', unit: 'piece', price: 100 })).body;
    const take = { sku_id: sku.id, quantity_change: -5, reason: 'count' };
    const refused = await owner.post(`/v1/stores/${store.id}/stock/adjustments`, take, { idempotencyKey: 'adj-1' });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'insufficient_stock');
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 10 }] });
    const retried = await owner.post(`/v1/stores/${store.id}/stock/adjustments`, take, { idempotencyKey: 'adj-1' });
    assert.equal(retried.status, 201);
    assert.equal(retried.body.quantity_after, 5);
  });

  it('an Idempotency-Key longer than 255 characters is a validation error', async () => {
    const response = await owner.post('/v1/stores', { code: 'S-LONG', name: 'L' }, { idempotencyKey: 'k'.repeat(256) });
    assert.equal(response.status, 400);
    assert.equal(response.body.code, 'validation_failed');
    assert.equal(Number((await t.admin.query(`SELECT count(*) FROM stores WHERE code = 'S-LONG'`)).rows[0].count), 0);
  });

  it('an Idempotency-Key in UTF-8 is the text it encodes; one stored as its bytes read as Latin-1 (before) still replays', async () => {
    // fetch sends each character up to U+00FF as one byte: the UTF-8 bytes go as a UTF-8 client sends them.
    const onTheWire = (key: string) => Buffer.from(key, 'utf8').toString('latin1');
    const first = await owner.post('/v1/stores', { code: 'S-UTF8', name: 'U' }, { idempotencyKey: onTheWire('магазин-1') });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const kept = await t.admin.query('SELECT key FROM idempotency_keys WHERE tenant_id = $1 AND key = ANY($2)', [tenantId, ['магазин-1', onTheWire('магазин-1')]]);
    assert.deepEqual(kept.rows.map((row) => row.key), ['магазин-1'], 'kept as the text, not as its bytes');
    const again = await owner.post('/v1/stores', { code: 'S-UTF8', name: 'U' }, { idempotencyKey: onTheWire('магазин-1') });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id]);

    // A record kept before: under the bytes read as Latin-1, not marked key_as_text (migration 1050).
    const old = await owner.post('/v1/stores', { code: 'S-UTF8-OLD', name: 'O' }, { idempotencyKey: onTheWire('магазин-2') });
    assert.equal(old.status, 201);
    await t.admin.query('UPDATE idempotency_keys SET key = $3, key_as_text = false WHERE tenant_id = $1 AND key = $2', [tenantId, 'магазин-2', onTheWire('магазин-2')]);
    const stores = await count('stores');
    const retried = await owner.post('/v1/stores', { code: 'S-UTF8-OLD', name: 'O' }, { idempotencyKey: onTheWire('магазин-2') });
    assert.deepEqual([retried.status, retried.headers.get('idempotent-replayed'), retried.body.id], [201, 'true', old.body.id]);
    const other = await owner.post('/v1/stores', { code: 'S-UTF8-NEW', name: 'N' }, { idempotencyKey: onTheWire('магазин-2') });
    assert.deepEqual([other.status, other.body.code], [422, 'idempotency_key_reused']);
    assert.equal(await count('stores'), stores, 'nothing new written');

    // 255 characters, not bytes: 255 Cyrillic letters (510 bytes) are a key; 256 are not.
    const longest = await owner.post('/v1/stores', { code: 'S-UTF8-LONG', name: 'L' }, { idempotencyKey: onTheWire('я'.repeat(255)) });
    assert.equal(longest.status, 201, JSON.stringify(longest.body));
    const tooLong = await owner.post('/v1/stores', { code: 'S-UTF8-LONGER', name: 'L' }, { idempotencyKey: onTheWire('я'.repeat(256)) });
    assert.deepEqual([tooLong.status, tooLong.body.code, tooLong.body.errors?.[0]?.path], [400, 'validation_failed', '/headers/idempotency-key']);
    assert.equal(Number((await t.admin.query(`SELECT count(*) FROM stores WHERE code = 'S-UTF8-LONGER'`)).rows[0].count), 0);
  });

  it("a key whose text is another key's UTF-8 read as Latin-1, used since, does not answer for that other key", async () => {
    const onTheWire = (key: string) => Buffer.from(key, 'utf8').toString('latin1');
    // `lookalike` is the text `магазин-3`'s bytes spell in Latin-1, sent as a key of its own since the upgrade (in UTF-8).
    const lookalike = onTheWire('магазин-3');
    const first = await owner.post('/v1/stores', { code: 'S-LOOK-1', name: 'L' }, { idempotencyKey: onTheWire(lookalike) });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const own = await owner.post('/v1/stores', { code: 'S-LOOK-2', name: 'L' }, { idempotencyKey: onTheWire('магазин-3') });
    assert.deepEqual([own.status, own.headers.get('idempotent-replayed')], [201, null], JSON.stringify(own.body));
    assert.notEqual(own.body.id, first.body.id);
  });

  it('several Idempotency-Key headers are refused 400 at /headers/idempotency-key, nothing written (Node joined them into one key, "k, k")', async () => {
    // Given a store with stock, and a till whose HTTP stack sends the key twice (a retry layer and the app each add it)
    const store = (await owner.post('/v1/stores', { code: 'S-DUP', name: 'Dup' })).body;
    const sku = (await owner.post('/v1/skus', { code: 'SKU-DUP', name: 'Dup', unit: 'piece', price: 100 })).body;
    assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 10 }] })).status, 201);
    const sale = { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] };
    const postTwice = (keys: string[]) =>
      new Promise<{ status: number; type: string | undefined; body: any }>((resolve, reject) => {
        const payload = JSON.stringify(sale);
        const request = http.request(`${t.baseUrl}/v1/sales`, {
          method: 'POST',
          // An array is sent as one header line per value.
          headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json', 'idempotency-key': keys },
        });
        request.on('response', (response) => {
          let text = '';
          response.on('data', (chunk) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode!, type: response.headers['content-type'], body: JSON.parse(text) }));
        });
        request.on('error', reject);
        request.end(payload);
      });
    const salesBefore = await count('sales');

    // When it sells online with the key sent twice — the same key, or two different ones
    for (const keys of [['till-dup-1', 'till-dup-1'], ['till-dup-1', 'till-dup-2']]) {
      const online = await postTwice(keys);
      // Then it is refused, saying which header, and nothing is written
      assert.deepEqual([online.status, online.body.code, online.body.errors?.[0]?.path], [400, 'validation_failed', '/headers/idempotency-key'], JSON.stringify(online.body));
      assert.match(online.type ?? '', /^application\/problem\+json/);
    }
    assert.equal(await count('sales'), salesBefore);
    assert.equal((await t.admin.query(`SELECT 1 FROM idempotency_keys WHERE tenant_id = $1 AND key LIKE 'till-dup-%'`, [tenantId])).rowCount, 0);

    // And the same sale synced later from its queue under its key is sold once (it was sold a second time: "till-dup-1, till-dup-1" was a key of its own)
    const synced = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: 'till-dup-1', ...sale }] });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    assert.equal(await count('sales'), salesBefore + 1);
  });

  it('expired keys are purged and can be used again', async () => {
    await owner.post('/v1/stores', { code: 'S-EXP', name: 'E' }, { idempotencyKey: 'old-key' });
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old-key'`);
    const fresh = await owner.post('/v1/stores', { code: 'S-EXP2', name: 'E2' }, { idempotencyKey: 'old-key' });
    assert.equal(fresh.status, 201, 'an expired key no longer binds the body');
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old-key'`);
    const purged = await t.appPool.query('SELECT purge_expired_idempotency_keys() AS n');
    assert.ok(purged.rows[0].n >= 1);
    assert.equal((await t.admin.query(`SELECT 1 FROM idempotency_keys WHERE key = 'old-key'`)).rowCount, 0);
  });
});
