import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenStore, givenToken } from '../sales/testkit.js';

/** PATCH /v1/stores/{id}: a store's name and time zone (the zone's own rules: src/settlements/storeTimeZone.int.spec.ts). */
describe('PATCH /v1/stores/{id}: the name', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const storeEvents = async (storeId: string) =>
    (await t.admin.query(`SELECT type, before, after FROM events WHERE tenant_id = $1 AND subject_type = 'store' AND subject_id = $2 ORDER BY id`, [tenantId, storeId]))
      .rows as Array<{ type: string; before: Record<string, unknown> | null; after: Record<string, unknown> }>;

  it('renames the store (alone, or with its zone), audited before and after; the same name again changes nothing', async () => {
    const store = await givenStore(owner, 'N1');
    const created = (await owner.get(`/v1/stores/${store}`)).body;
    const renamed = await owner.patch(`/v1/stores/${store}`, { name: 'Harbour Street' });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.deepEqual(renamed.body, { ...created, name: 'Harbour Street', version: 2 });
    const both = await owner.patch(`/v1/stores/${store}`, { name: 'Harbour St.', time_zone: 'Europe/Lisbon' });
    assert.equal(both.status, 200, JSON.stringify(both.body));
    // one change of both: one version more
    assert.deepEqual(both.body, { ...created, name: 'Harbour St.', time_zone: 'Europe/Lisbon', version: 3 });
    assert.equal((await owner.patch(`/v1/stores/${store}`, { name: 'Harbour St.' })).status, 200);
    assert.equal((await owner.patch(`/v1/stores/${store}`, {})).status, 200);
    const events = await storeEvents(store);
    assert.deepEqual(events.map((event) => [event.type, event.before?.name ?? null, event.after.name]), [
      ['store.create', null, 'Store N1'],
      ['store.update', 'Store N1', 'Harbour Street'],
      ['store.update', 'Harbour Street', 'Harbour St.'],
      ['store.update', 'Harbour St.', 'Harbour St.'], // the zone's change
    ]);
    assert.equal(events[3]!.after.time_zone, 'Europe/Lisbon');
    assert.deepEqual((await owner.get(`/v1/stores/${store}`)).body, both.body);
  });

  it("the store's version is its ETag: If-Match names what a change was made from, a stale one is 412 with current_version and changes nothing; changes sent at once from one version: one applies", async () => {
    const store = await givenStore(owner, 'V1');
    const read = await owner.get(`/v1/stores/${store}`);
    assert.deepEqual([read.body.version, read.headers.get('etag')], [1, '"1"']);
    const moved = await owner.patch(`/v1/stores/${store}`, { time_zone: 'Europe/Paris' }, { headers: { 'if-match': '"1"' } });
    assert.deepEqual([moved.status, moved.body.version, moved.headers.get('etag')], [200, 2, '"2"'], JSON.stringify(moved.body));
    // A manager who still sees version 1 renames it: refused, told the current version, nothing changed, no event
    const stale = await owner.patch(`/v1/stores/${store}`, { name: 'Old view', time_zone: 'UTC' }, { headers: { 'if-match': '"1"' } });
    assert.deepEqual([stale.status, stale.body.code, stale.body.current_version], [412, 'version_conflict', 2], JSON.stringify(stale.body));
    assert.deepEqual((await owner.get(`/v1/stores/${store}`)).body, moved.body);
    // The same values again: answered as it is, the version unchanged
    const same = await owner.patch(`/v1/stores/${store}`, { time_zone: 'Europe/Paris' }, { headers: { 'if-match': '"2"' } });
    assert.deepEqual([same.status, same.body.version, same.headers.get('etag')], [200, 2, '"2"']);
    // Eight renames at once from version 2: one applies, seven are 412
    const sent = await Promise.all(Array.from({ length: 8 }, (_, i) => owner.patch(`/v1/stores/${store}`, { name: `Name ${i}` }, { headers: { 'if-match': '"2"' } })));
    const applied = sent.filter((response) => response.status === 200);
    assert.equal(applied.length, 1, JSON.stringify(sent.map((response) => response.status)));
    assert.ok(sent.every((response) => response.status === 200 || (response.status === 412 && response.body.current_version === 3)));
    const row = (await t.admin.query(`SELECT name, time_zone, version FROM stores WHERE tenant_id = $1 AND id = $2`, [tenantId, store])).rows[0];
    assert.deepEqual(row, { name: applied[0]!.body.name, time_zone: 'Europe/Paris', version: 3 });
    assert.deepEqual((await storeEvents(store)).map((event) => event.type), ['store.create', 'store.update', 'store.update']);
    // A new store's answer carries its ETag
    const created = await owner.post('/v1/stores', { code: 'V2', name: 'Second' });
    assert.deepEqual([created.status, created.body.version, created.headers.get('etag')], [201, 1, '"1"']);
  });

  it('refused, nothing changes: an empty or too long name, an unknown member (400); a zone refused (409) leaves the name too; another store of a limited token (404); a cashier (403)', async () => {
    const store = await givenStore(owner, 'N2');
    const row = async () => (await t.admin.query(`SELECT name, time_zone FROM stores WHERE tenant_id = $1 AND id = $2`, [tenantId, store])).rows[0];
    const before = await row();
    for (const [body, path] of [
      [{ name: '' }, '/body/name'],
      [{ name: 'x'.repeat(201) }, '/body/name'],
      [{ code: 'N3' }, '/body/code'],
      [{ name: null }, '/body/name'],
    ] as const) {
      const refused = await owner.patch(`/v1/stores/${store}`, body);
      assert.equal(refused.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(refused.body)}`);
      assert.ok(JSON.stringify(refused.body.errors).includes(path), JSON.stringify(refused.body.errors));
    }
    // A count of today in UTC+14 closes that day; UTC-11's today is before it: 409, the new name not kept either.
    assert.equal((await owner.patch(`/v1/stores/${store}`, { time_zone: 'Pacific/Kiritimati' })).status, 200);
    const today = new Intl.DateTimeFormat('en-CA', { timeZone: 'Pacific/Kiritimati' }).format(new Date());
    const counted = await owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 0 });
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const refused = await owner.patch(`/v1/stores/${store}`, { name: 'Renamed', time_zone: 'Pacific/Pago_Pago' });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.deepEqual(await row(), { ...before, time_zone: 'Pacific/Kiritimati' });
    const other = await givenStore(owner, 'N4');
    assert.equal((await (await givenToken(t, owner, 'manager', [other])).patch(`/v1/stores/${store}`, { name: 'Mine' })).status, 404);
    assert.equal((await (await givenToken(t, owner, 'cashier')).patch(`/v1/stores/${store}`, { name: 'Mine' })).status, 403);
    assert.deepEqual(await row(), { ...before, time_zone: 'Pacific/Kiritimati' });
  });
});
