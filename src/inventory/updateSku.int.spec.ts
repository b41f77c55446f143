import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';

/** PATCH /v1/skus/{id}: a SKU's code, name and default price change; its unit and piece tracking never do. */
describe('PATCH /v1/skus/{id}', () => {
  let t: TestApp;
  let owner: ApiClient;
  let manager: ApiClient;
  let tenantId: string;
  let store: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = await givenStore(owner, 'U1');
    manager = await givenToken(t, owner, 'manager');
  });
  after(() => t.close());

  const skuEvents = async (skuId: string) =>
    (
      await t.admin.query(`SELECT type, before, after FROM events WHERE tenant_id = $1 AND subject_type = 'sku' AND subject_id = $2 ORDER BY id`, [tenantId, skuId])
    ).rows as Array<{ type: string; before: Record<string, unknown> | null; after: Record<string, unknown> }>;

  it('changes what is sent (price, name, code), keeps the rest, audits before and after; sales keep the price they were made at', async () => {
    // Given: a SKU sold once at its price
    const cheese = await givenSku(owner, 'CHEESE', 'kg', 1500);
    await givenStock(owner, store, [{ sku_id: cheese, quantity: 10_000 }]);
    const sold = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: cheese, quantity: 1000, unit_price: 1500 }] });
    assert.equal(sold.status, 201, JSON.stringify(sold.body));
    const created = (await owner.get(`/v1/skus/${cheese}`)).body;
    // When: the price goes up; then the name and code change (as merge-patch+json)
    const priced = await manager.patch(`/v1/skus/${cheese}`, { price: 1650 });
    const renamed = await manager.request('PATCH', `/v1/skus/${cheese}`, { name: 'Aged cheese', code: 'CHEESE-AGED' }, { headers: { 'content-type': 'application/merge-patch+json' } });
    // Then
    assert.equal(priced.status, 200, JSON.stringify(priced.body));
    assert.deepEqual(priced.body, { ...created, price: 1650, version: 2 });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.deepEqual(renamed.body, { ...created, price: 1650, name: 'Aged cheese', code: 'CHEESE-AGED', version: 3 });
    assert.deepEqual((await owner.get(`/v1/skus/${cheese}`)).body, renamed.body);
    const events = await skuEvents(cheese);
    assert.deepEqual(events.map((event) => event.type), ['sku.create', 'sku.update', 'sku.update']);
    assert.equal(events[1]!.before!.price, 1500);
    assert.equal(events[1]!.after.price, 1650);
    assert.equal(events[2]!.before!.name, `SKU CHEESE`);
    assert.equal(events[2]!.after.code, 'CHEESE-AGED');
    // The operation names the SKU row it changed.
    const { rows } = await t.admin.query(`SELECT op_id FROM events WHERE tenant_id = $1 AND subject_id = $2 ORDER BY id DESC LIMIT 1`, [tenantId, cheese]);
    const operation = await owner.get(`/v1/operations/${rows[0].op_id}`);
    assert.equal(operation.status, 200, JSON.stringify(operation.body));
    assert.deepEqual(operation.body.effects, [{ table: 'skus', id: cheese, action: 'updated' }]);
    // The sale made before keeps its price.
    assert.equal((await owner.get(`/v1/sales/${sold.body.id}`)).body.items[0].unit_price, 1500);
  });

  it('the same values, or an empty patch: the SKU as it is, no event; a retry of a change replays it', async () => {
    const soap = await givenSku(owner, 'SOAP', 'piece', 300);
    const same = await manager.patch(`/v1/skus/${soap}`, { price: 300, name: 'SKU SOAP' });
    const empty = await manager.patch(`/v1/skus/${soap}`, {});
    assert.equal(same.status, 200);
    assert.equal(empty.status, 200);
    assert.deepEqual(same.body, empty.body);
    assert.deepEqual((await skuEvents(soap)).map((event) => event.type), ['sku.create']);
    // A change sent twice with one key: applied once, answered twice alike.
    const key = randomUUID();
    const first = await manager.patch(`/v1/skus/${soap}`, { price: 350 }, { idempotencyKey: key });
    const again = await manager.patch(`/v1/skus/${soap}`, { price: 350 }, { idempotencyKey: key });
    assert.equal(first.status, 200);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assert.deepEqual((await skuEvents(soap)).map((event) => event.type), ['sku.create', 'sku.update']);
  });

  it('refusals change nothing: a code another SKU has (409), unit or tracks_pieces or a bad value (400), a store-limited token or a cashier (403), an unknown SKU (404)', async () => {
    const bread = await givenSku(owner, 'BREAD', 'piece', 200);
    await givenSku(owner, 'ROLLS', 'piece', 50);
    const row = async () => (await t.admin.query(`SELECT code, name, unit, price, tracks_pieces FROM skus WHERE tenant_id = $1 AND id = $2`, [tenantId, bread])).rows[0];
    const before = await row();
    const taken = await manager.patch(`/v1/skus/${bread}`, { code: 'ROLLS', price: 999 });
    assert.equal(taken.status, 409, JSON.stringify(taken.body));
    assert.equal(taken.body.code, 'already_exists');
    for (const [body, path] of [
      [{ unit: 'kg' }, '/body/unit'],
      [{ tracks_pieces: true }, '/body/tracks_pieces'],
      [{ price: -1 }, '/body/price'],
      [{ price: null }, '/body/price'],
      [{ name: '' }, '/body/name'],
      [{ code: 'x'.repeat(101) }, '/body/code'],
    ] as const) {
      const refused = await manager.patch(`/v1/skus/${bread}`, body);
      assert.equal(refused.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(refused.body)}`);
      assert.ok(JSON.stringify(refused.body.errors).includes(path), `${JSON.stringify(body)}: ${JSON.stringify(refused.body.errors)}`);
    }
    const limited = await givenToken(t, owner, 'manager', [store]);
    const cashier = await givenToken(t, owner, 'cashier');
    assert.equal((await limited.patch(`/v1/skus/${bread}`, { price: 1 })).status, 403);
    assert.equal((await cashier.patch(`/v1/skus/${bread}`, { price: 1 })).status, 403);
    const unknown = await manager.patch(`/v1/skus/${randomUUID()}`, { price: 1 });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    const stranger = (await t.newTenant()).owner;
    assert.equal((await stranger.patch(`/v1/skus/${bread}`, { price: 1 })).status, 404);
    assert.deepEqual(await row(), before);
    assert.deepEqual((await skuEvents(bread)).map((event) => event.type), ['sku.create']);
  });

  it("the SKU's version is its ETag: If-Match names what a change was made from, a stale one is 412 with current_version and changes nothing; a replay carries its first ETag", async () => {
    const tea = await givenSku(owner, 'TEA', 'piece', 400);
    const read = await owner.get(`/v1/skus/${tea}`);
    assert.deepEqual([read.status, read.body.version, read.headers.get('etag')], [200, 1, '"1"']);
    // A change from version 1: applied, version 2
    const key = randomUUID();
    const first = await manager.patch(`/v1/skus/${tea}`, { price: 450 }, { idempotencyKey: key, headers: { 'if-match': '"1"' } });
    assert.deepEqual([first.status, first.body.version, first.body.price, first.headers.get('etag')], [200, 2, 450, '"2"'], JSON.stringify(first.body));
    // Another manager still looking at version 1: refused, told the current version, nothing changed
    const stale = await owner.patch(`/v1/skus/${tea}`, { price: 420, name: 'Green tea' }, { headers: { 'if-match': '"1"' } });
    assert.deepEqual([stale.status, stale.body.code, stale.body.current_version], [412, 'version_conflict', 2], JSON.stringify(stale.body));
    assert.deepEqual((await owner.get(`/v1/skus/${tea}`)).body, first.body);
    // If-Match naming no version of ours is 412 too; `*` and a list holding the current version go through
    assert.equal((await owner.patch(`/v1/skus/${tea}`, { price: 1 }, { headers: { 'if-match': '"abc"' } })).status, 412);
    const listed = await owner.patch(`/v1/skus/${tea}`, { price: 460 }, { headers: { 'if-match': '"1", W/"2"' } });
    assert.deepEqual([listed.status, listed.body.version, listed.headers.get('etag')], [200, 3, '"3"']);
    const any = await owner.patch(`/v1/skus/${tea}`, { name: 'Black tea' }, { headers: { 'if-match': '*' } });
    assert.deepEqual([any.status, any.body.version], [200, 4]);
    // Nothing changed: the version stays
    const same = await owner.patch(`/v1/skus/${tea}`, { name: 'Black tea' }, { headers: { 'if-match': '"4"' } });
    assert.deepEqual([same.status, same.body.version, same.headers.get('etag')], [200, 4, '"4"']);
    // The first change retried with its key: its own answer and ETag, though the SKU moved on; nothing written
    const again = await manager.patch(`/v1/skus/${tea}`, { price: 450 }, { idempotencyKey: key, headers: { 'if-match': '"1"' } });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.headers.get('etag')], [200, 'true', '"2"']);
    assert.deepEqual(again.body, first.body);
    const events = await skuEvents(tea);
    assert.deepEqual(events.map((event) => [event.type, event.after.version]), [['sku.create', 1], ['sku.update', 2], ['sku.update', 3], ['sku.update', 4]]);
    // A new SKU's answer carries its ETag
    const created = await owner.post('/v1/skus', { code: 'COFFEE', name: 'Coffee', unit: 'kg', price: 2000 });
    assert.deepEqual([created.status, created.body.version, created.headers.get('etag')], [201, 1, '"1"']);
  });

  it('changes sent at once from one version: exactly one applies, the others are 412 and leave no trace', async () => {
    // Given
    const salt = await givenSku(owner, 'SALT', 'piece', 80);
    const clients = [owner, manager, await givenToken(t, owner, 'admin'), await givenToken(t, owner, 'manager')];
    // When: 16 managers reprice from version 1 at once
    const sent = await Promise.all(Array.from({ length: 16 }, (_, i) => clients[i % 4]!.patch(`/v1/skus/${salt}`, { price: 81 + i }, { headers: { 'if-match': '"1"' } })));
    // Then: one 200, fifteen 412 naming version 2; the row is the winner's
    const applied = sent.filter((response) => response.status === 200);
    assert.equal(applied.length, 1, JSON.stringify(sent.map((response) => response.status)));
    assert.ok(sent.every((response) => response.status === 200 || (response.status === 412 && response.body.current_version === 2)));
    const row = (await t.admin.query(`SELECT price, version FROM skus WHERE tenant_id = $1 AND id = $2`, [tenantId, salt])).rows[0];
    assert.deepEqual(row, { price: applied[0]!.body.price, version: 2 });
    const events = await skuEvents(salt);
    assert.deepEqual(events.map((event) => event.type), ['sku.create', 'sku.update']);
    assert.equal(events[1]!.after.price, applied[0]!.body.price);
  });

  it('changes of one SKU sent at once take turns: each event starts from the one before, and the row ends as the last one left it', async () => {
    // Given
    const milk = await givenSku(owner, 'MILK', 'piece', 100);
    // When: 24 price changes and 8 renames at once, from four tokens
    const clients = [owner, manager, await givenToken(t, owner, 'admin'), await givenToken(t, owner, 'manager')];
    const sent = await Promise.all([
      ...Array.from({ length: 24 }, (_, i) => clients[i % 4]!.patch(`/v1/skus/${milk}`, { price: 101 + i })),
      ...Array.from({ length: 8 }, (_, i) => clients[i % 4]!.patch(`/v1/skus/${milk}`, { name: `Milk ${i}` })),
    ]);
    // Then: every change applied, one event each, chained
    assert.ok(sent.every((response) => response.status === 200), JSON.stringify(sent.map((response) => response.status)));
    const events = (await skuEvents(milk)).slice(1);
    assert.equal(events.length, 32);
    for (let i = 1; i < events.length; i++) assert.deepEqual(events[i]!.before, events[i - 1]!.after, `event ${i} starts from event ${i - 1}`);
    const final = (await t.admin.query(`SELECT code, name, price FROM skus WHERE tenant_id = $1 AND id = $2`, [tenantId, milk])).rows[0];
    const last = events[events.length - 1]!.after;
    assert.deepEqual(final, { code: last.code, name: last.name, price: last.price });
    assert.deepEqual(new Set(events.map((event) => event.after.price)).size >= 24, true);
  });
});
