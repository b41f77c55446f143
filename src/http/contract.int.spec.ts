/**
 * The contract (API.md, README) where endpoints of different parts must
 * answer alike: replays, 404s, the members of 409 and 412 problems,
 * If-Match on PATCH, timestamps.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';
import { offsetNorth } from '../field/geofence.js';

const SHOP = { latitude: -1.286389, longitude: 36.817223 };

describe('the HTTP contract across endpoints', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let otherStore: string;
  let soap: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = await givenStore(owner, 'MAIN');
    otherStore = await givenStore(owner, 'OTHER');
    soap = await givenSku(owner, 'SOAP', 'piece', 120);
    await givenStock(owner, store, [{ sku_id: soap, quantity: 100 }]);
    await givenStock(owner, otherStore, [{ sku_id: soap, quantity: 100 }]);
  });
  after(() => t.close());

  const count = async (sql: string) => Number((await t.admin.query(sql, [tenantId])).rows[0].n);

  it('visit completion retried with its ORIGINAL Idempotency-Key after re-reading GPS replays 200 (README: "any key or none, any position")', async () => {
    const agentToken = (await owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [store] })).body;
    const agent = t.client(agentToken.token);
    const pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, ...SHOP })).body;
    const visit = (await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agentToken.id, scheduled_for: new Date().toISOString() })).body;
    const lines = [{ sku_id: soap, quantity: 3 }];

    const first = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines }, { idempotencyKey: 'visit-complete-1' });
    assert.equal(first.status, 200, JSON.stringify(first.body));

    // The response was lost; the till retries with the same key, but its GPS fix moved 30 m.
    const withNewKey = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 30), lines }, { idempotencyKey: 'visit-complete-other' });
    assert.equal(withNewKey.status, 200, 'a new key replays (documented, and it does)');
    const retry = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 30), lines }, { idempotencyKey: 'visit-complete-1' });
    assert.equal(retry.status, 200, `same key, same goods, re-read GPS: ${JSON.stringify(retry.body)}`);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(retry.body, first.body);
    // Other goods under the same key are another request.
    const otherGoods = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 4 }] }, { idempotencyKey: 'visit-complete-1' });
    assert.equal(otherGoods.status, 422, JSON.stringify(otherGoods.body));
    assert.equal(otherGoods.body.code, 'idempotency_key_reused');
  });

  it('GET /v1/ledger/operations/{op_id}: an operation that does not exist is 404 exactly like one outside the caller\'s stores (and like GET /v1/operations/{op_id})', async () => {
    const cashier = await givenToken(t, owner, 'manager', [store]);
    const elsewhere = await owner.post('/v1/sales', { store_id: otherStore, payment_method: 'cash', items: [{ sku_id: soap, quantity: 1, unit_price: 120 }] });
    assert.equal(elsewhere.status, 201);
    const missing = '00000000-0000-4000-8000-0000000000aa';

    const outOfScope = await cashier.get(`/v1/ledger/operations/${elsewhere.body.op_id}`);
    assert.equal(outOfScope.status, 404, 'another store\'s operation is 404');
    assert.equal((await cashier.get(`/v1/operations/${missing}`)).status, 404, 'GET /v1/operations: unknown → 404');

    const unknown = await cashier.get(`/v1/ledger/operations/${missing}`);
    assert.equal(unknown.status, outOfScope.status, `unknown op answered ${unknown.status} ${JSON.stringify(unknown.body)}: a store-limited token can tell another store's operation from a missing one`);
  });

  it('a list filtered by a store outside the token\'s stores, or by no store of the tenant, is 404, like any read that names that store (not an empty list)', async () => {
    const manager = await givenToken(t, owner, 'manager', [store]);
    const unknown = '01000000-0000-7000-8000-000000000000';
    for (const path of ['/v1/pieces', '/v1/points-of-sale', '/v1/settlements', '/v1/transfers']) {
      // Their own store lists (200); another store of the tenant, or a store that does not exist, is 404 alike
      assert.equal((await manager.get(`${path}?store_id=${store}`)).status, 200, path);
      for (const other of [otherStore, unknown]) {
        const response = await manager.get(`${path}?store_id=${other}`);
        assert.equal(response.status, 404, `${path} ${JSON.stringify(response.body)}`);
        assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
        assert.equal(response.body.code, 'not_found');
      }
      // A token of every store reads any store's list; a store that does not exist is 404 for it too (API.md: "exactly as if it did not exist")
      assert.equal((await owner.get(`${path}?store_id=${otherStore}`)).status, 200, path);
      const missing = await owner.get(`${path}?store_id=${unknown}`);
      assert.equal(missing.status, 404, `${path} ${JSON.stringify(missing.body)}`);
      assert.equal(missing.body.code, 'not_found');
    }
    // As the daily sales read did already
    assert.equal((await manager.get(`/v1/analytics/daily-sales?store_id=${otherStore}&from=2026-01-01&to=2026-01-02`)).status, 404);
    // And visits filtered by a point of sale of another store, or by none, as its own GET is
    const theirs = await owner.post('/v1/points-of-sale', { name: `Kiosk ${unknown.slice(-4)}`, store_id: otherStore, ...SHOP });
    const ours = await owner.post('/v1/points-of-sale', { name: 'Our kiosk', store_id: store, ...SHOP });
    assert.equal(theirs.status, 201, JSON.stringify(theirs.body));
    assert.equal((await manager.get(`/v1/visits?point_of_sale_id=${ours.body.id}`)).status, 200);
    for (const [client, id] of [[manager, theirs.body.id], [manager, unknown], [owner, unknown]] as const) {
      const response = await client.get(`/v1/visits?point_of_sale_id=${id}`);
      assert.equal(response.status, 404, JSON.stringify(response.body));
      assert.equal(response.body.code, 'not_found');
      assert.equal((await client.get(`/v1/points-of-sale/${id}`)).status, 404);
    }
    assert.equal((await owner.get(`/v1/visits?point_of_sale_id=${theirs.body.id}`)).status, 200);
  });

  it('every list answers the list shape { items, next_cursor } and pages with ?limit= and ?cursor= (API.md "Lists"): a store\'s accounts and an operation\'s journal entries too', async () => {
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: soap, quantity: 1, unit_price: 120 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    for (const path of [`/v1/stores/${store}/accounts`, `/v1/ledger/operations/${sale.body.op_id}`]) {
      const whole = await owner.get(path);
      assert.equal(whole.status, 200, JSON.stringify(whole.body));
      assert.deepEqual(Object.keys(whole.body).sort(), ['items', 'next_cursor'], `${path}: ${JSON.stringify(whole.body)}`);
      assert.equal(whole.body.next_cursor, null, path);
      // Paged one item at a time, the pages hold every item once, in order.
      const seen: unknown[] = [];
      let cursor: string | null = null;
      do {
        const page: { status: number; body: { items: unknown[]; next_cursor: string | null } } = await owner.get(`${path}?limit=1${cursor === null ? '' : `&cursor=${cursor}`}`);
        assert.equal(page.status, 200, `${path}: ${JSON.stringify(page.body)}`);
        assert.ok(page.body.items.length <= 1, `${path}?limit=1 answered ${page.body.items.length} items`);
        seen.push(...page.body.items);
        cursor = page.body.next_cursor;
      } while (cursor !== null && seen.length <= whole.body.items.length);
      assert.deepEqual(seen, whole.body.items, path);
      for (const query of ['limit=0', 'limit=501', 'cursor=bm90LWEtY3Vyc29y']) {
        const refused = await owner.get(`${path}?${query}`);
        assert.equal(refused.status, 400, `${path}?${query}: ${JSON.stringify(refused.body)}`);
        assert.equal(refused.body.code, 'validation_failed');
      }
    }
    assert.equal((await owner.get(`/v1/stores/${store}/accounts?limit=2`)).body.items.length, 2);
  });

  it('an action that takes no body accepts an empty one sent as application/json (Content-Length: 0, as OkHttp and .NET tills send it) like no body at all; an action that needs a body still refuses it', async () => {
    const empty = { rawBody: '', headers: { 'content-type': 'application/json; charset=utf-8' } };
    const transfer = await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: otherStore, items: [{ sku_id: soap, quantity: 1 }] });
    assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
    const approved = await owner.post(`/v1/transfers/${transfer.body.id}/approve`, undefined, { ...empty, idempotencyKey: 'empty-body-approve' });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal(approved.body.status, 'approved');
    // The same request sent with no body at all is the same request: replayed.
    const again = await owner.post(`/v1/transfers/${transfer.body.id}/approve`, undefined, { idempotencyKey: 'empty-body-approve' });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    const other = await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: otherStore, items: [{ sku_id: soap, quantity: 1 }] });
    const cancelled = await owner.post(`/v1/transfers/${other.body.id}/cancel`, undefined, empty);
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    const till = (await owner.post('/v1/tokens', { name: 'empty-body-till', role: 'cashier' })).body;
    const revoked = await owner.post(`/v1/tokens/${till.id}/revoke`, undefined, empty);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    // A void needs its reason: an empty body there is still malformed_json.
    const refused = await owner.post(`/v1/sales/00000000-0000-4000-8000-000000000001/void`, undefined, empty);
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'malformed_json');
  });

  it('an action whose body is optional (a transfer receipt: everything arrived; a settlement decision without a note) accepts an empty one sent as application/json, like no body at all — the OpenAPI document marks it optional', async () => {
    const empty = { rawBody: '', headers: { 'content-type': 'application/json' } };
    const transfer = await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: otherStore, items: [{ sku_id: soap, quantity: 2 }] });
    assert.equal((await owner.post(`/v1/transfers/${transfer.body.id}/approve`)).status, 200);
    const received = await owner.post(`/v1/transfers/${transfer.body.id}/receive`, undefined, { ...empty, idempotencyKey: 'empty-body-receive' });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    assert.equal(received.body.status, 'received');
    // The same request sent with no body at all is the same request: replayed.
    const again = await owner.post(`/v1/transfers/${transfer.body.id}/receive`, undefined, { idempotencyKey: 'empty-body-receive' });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true'], JSON.stringify(again.body));
    const day = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
    const counted = await owner.post('/v1/settlements', { store_id: otherStore, business_date: day, declared_cash: 0 });
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const rejected = await owner.post(`/v1/settlements/${counted.body.id}/reject`, undefined, { ...empty, headers: { ...empty.headers, 'if-match': '"1"' } });
    assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
    assert.equal(rejected.body.status, 'rejected');
  });

  it('a bad field in the body of an action whose body is optional is refused at that field alone — not also at /body as "must be one of null"', async () => {
    const transfer = await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: otherStore, items: [{ sku_id: soap, quantity: 1 }] });
    const order = await owner.post('/v1/orders', { store_id: store, lines: [{ sku_id: soap, quantity: 1 }], shipping_address: { name: 'A', line1: 'B', city: 'C', postal_code: '1', country: 'KE' }, payment_reference: 'p-optional-body' });
    for (const [send, path] of [
      [() => owner.post(`/v1/orders/${order.body.id}/cancel`, { reason: '' }), '/body/reason'],
      [() => owner.post(`/v1/transfers/${transfer.body.id}/receive`, { items: 3 }), '/body/items'],
      [() => owner.post(`/v1/transfers/${transfer.body.id}/approve`, { note: 'x' }), '/body/note'],
    ] as const) {
      const response = await send();
      assert.equal(response.status, 400, JSON.stringify(response.body));
      assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), [path], JSON.stringify(response.body));
    }
    // Nothing written: the transfer still requested, the order still pending.
    assert.equal((await owner.get(`/v1/transfers/${transfer.body.id}`)).body.status, 'requested');
    assert.equal((await owner.get(`/v1/orders/${order.body.id}`)).body.status, 'pending');
  });

  it('POST /v1/stock/snapshots, whose input is all optional (`{ through? }`), is taken with no body, `null` or an empty one sent as application/json, like `{}` — the same request for its Idempotency-Key', async () => {
    const { owner: manager } = await t.newTenant();
    const shop = await givenStore(manager, 'MAIN');
    const rice = await givenSku(manager, 'RICE', 'kg', 250);
    await givenStock(manager, shop, [{ sku_id: rice, quantity: 1000 }]);
    const empty = { rawBody: '', headers: { 'content-type': 'application/json' } };
    const first = await manager.post('/v1/stock/snapshots', undefined, { ...empty, idempotencyKey: 'snapshots-no-body' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(typeof first.body.snapshots_written, 'number');
    // No body at all, `null` and `{}` are the same request: replayed, nothing taken again.
    for (const [how, body] of [['no body', undefined], ['null', null], ['{}', {}]] as const) {
      const again = await manager.post('/v1/stock/snapshots', body, { idempotencyKey: 'snapshots-no-body' });
      assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true'], `${how}: ${JSON.stringify(again.body)}`);
      assert.deepEqual(again.body, first.body, how);
    }
    // Without a key, each spelling is a run of its own (nothing left to take: nothing written).
    for (const body of [undefined, null]) {
      const run = await manager.post('/v1/stock/snapshots', body);
      assert.deepEqual([run.status, run.body.snapshots_written], [200, 0], JSON.stringify(run.body));
    }
    // Anything else is still refused at its path, nothing written.
    const bad = await manager.post('/v1/stock/snapshots', { through: 'yesterday' });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.equal(bad.body.errors[0].path, '/body/through');
  });

  it('409 invalid_transition on a settlement decision carries current_status, like transfers, orders and visits', async () => {
    // Transfers (README) and orders answer `current_status`; the settlement decision puts the
    // settlement's status under `status`, which the problem document's own `status` (409) overwrites.
    const settlement = (await owner.post('/v1/settlements', { store_id: store, business_date: '2026-01-02', declared_cash: 0 })).body;
    assert.equal((await owner.post(`/v1/settlements/${settlement.id}/approve`, {}, { headers: { 'if-match': '"1"' } })).status, 200);
    const again = await owner.post(`/v1/settlements/${settlement.id}/reject`, {}, { headers: { 'if-match': '"2"' } });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'invalid_transition');
    assert.equal(again.body.current_status, 'approved', `problem document: ${JSON.stringify(again.body)}`);
  });

  it('412 version_conflict on a piece cut carries current_version, like transfers, orders and settlements', async () => {
    const cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body;
    const roll = (await owner.post('/v1/pieces', { store_id: store, sku_id: cloth.id, pieces: [{ kind: 'roll', quantity: 10_000 }] })).body.pieces[0];
    const stale = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, { headers: { 'if-match': '"99"' } });
    assert.equal(stale.status, 412);
    assert.equal(stale.body.code, 'version_conflict');
    assert.equal(stale.body.current_version, roll.version, `problem document: ${JSON.stringify(stale.body)}`);
  });

  it('PATCH /v1/tenant/settings with an If-Match that matches nothing is 412 and changes nothing (API.md: "a PATCH/approve with If-Match that no longer matches → 412")', async () => {
    const before = (await owner.get('/v1/tenant/settings')).body;
    const patched = await owner.patch('/v1/tenant/settings', { geofence_radius_m: 321 }, { headers: { 'if-match': '"stale-etag-from-another-admin"' } });
    const after = (await owner.get('/v1/tenant/settings')).body;
    assert.equal(patched.status, 412, `answered ${patched.status} ${JSON.stringify(patched.body)}; settings before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
    assert.deepEqual(after, before);
    assert.equal(patched.body.code, 'version_conflict');
  });

  it('tenant settings are versioned like every record edited by two people: GET sends the ETag, PATCH with it applies, with an older one is 412', async () => {
    const { owner: admin, tenantId: id } = await t.newTenant();
    const read = await admin.get('/v1/tenant/settings');
    const etag = read.headers.get('etag');
    assert.match(String(etag), /^"\d+"$/);
    const first = await admin.patch('/v1/tenant/settings', { geofence_radius_m: 150 }, { headers: { 'if-match': etag! } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.geofence_radius_m, 150);
    const next = first.headers.get('etag');
    assert.notEqual(next, etag);
    assert.equal((await admin.get('/v1/tenant/settings')).headers.get('etag'), next);
    // A second admin still holding the first ETag is refused, and nothing changes.
    const stale = await admin.patch('/v1/tenant/settings', { geofence_radius_m: 999 }, { headers: { 'if-match': etag! } });
    assert.equal(stale.status, 412);
    assert.equal(stale.body.code, 'version_conflict');
    assert.equal(stale.body.current_version, Number(next!.replace(/"/g, '')));
    assert.equal((await admin.get('/v1/tenant/settings')).body.geofence_radius_m, 150);
    // Without If-Match, or with `*`, a change applies as before.
    assert.equal((await admin.patch('/v1/tenant/settings', { settlement_float: 5000 })).status, 200);
    assert.equal((await admin.patch('/v1/tenant/settings', { settlement_float: 6000 }, { headers: { 'if-match': '*' } })).status, 200);
    const { rows } = await t.admin.query(`SELECT settings, settings_version FROM tenants WHERE id = $1`, [id]);
    assert.deepEqual(rows, [{ settings: { geofence_radius_m: 150, settlement_float: 6000 }, settings_version: 4 }]);
  });

  it('a visit scheduled outside the years 0001–9999 in UTC is 400 and nothing is written, like client_created_at and as_of', async () => {
    const agentToken = (await owner.post('/v1/tokens', { name: 'agent2', role: 'field_agent', store_ids: [store] })).body;
    const pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk 2', store_id: store, ...SHOP })).body;
    const visitsBefore = await count('SELECT count(*)::int AS n FROM visits WHERE tenant_id = $1');
    const response = await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agentToken.id, scheduled_for: '9999-12-31T23:30:00-01:00' });
    assert.equal(response.status, 400, JSON.stringify(response.body));
    assert.deepEqual(response.body.errors, [{ path: '/body/scheduled_for', message: 'must fall within the years 0001–9999 in UTC' }]);
    assert.equal(await count('SELECT count(*)::int AS n FROM visits WHERE tenant_id = $1'), visitsBefore);
    // The last moment of year 9999 in UTC is fine, and answered as written.
    const last = await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agentToken.id, scheduled_for: '9999-12-31T23:30:00Z' });
    assert.equal(last.status, 201, JSON.stringify(last.body));
    assert.equal(last.body.scheduled_for, '9999-12-31T23:30:00.000Z');
  });
  it('GET /v1/analytics/daily-sales: a from or to that is no real day (2026-02-30, year 0) is 400 at its query field, like every date the API reads', async () => {
    for (const [from, to, field] of [
      ['2026-02-30', '2026-03-02', 'from'],
      ['0000-12-31', '0001-01-02', 'from'],
      ['2026-02-01', '2026-02-29', 'to'],
    ] as const) {
      const response = await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=${from}&to=${to}`);
      assert.equal(response.status, 400, JSON.stringify(response.body));
      assert.equal(response.body.code, 'validation_failed');
      assert.deepEqual(response.body.errors.map((e: { path: string }) => e.path), [`/querystring/${field}`], `${from}..${to}: ${JSON.stringify(response.body)}`);
    }
    assert.equal((await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=2028-02-01&to=2028-02-29`)).status, 200, 'a leap day is a day');
  });
  it('a transfer the token sees (one end is its store) but whose action belongs to the other end is 403 forbidden, not 404 (API.md: "an action the role may not take on a record it can see: 403"); a third store\'s token still gets 404', async () => {
    const third = await givenStore(owner, 'THIRD');
    const sourceManager = await givenToken(t, owner, 'manager', [store]);
    const destinationManager = await givenToken(t, owner, 'manager', [otherStore]);
    const outsider = await givenToken(t, owner, 'manager', [third]);
    const transfer = await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: otherStore, items: [{ sku_id: soap, quantity: 1 }] });
    assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
    const id = transfer.body.id;
    const stockLedger = () => count('SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1');

    // The destination's manager sees the transfer, so approving it (the source's action) is 403, and nothing is written.
    assert.equal((await destinationManager.get(`/v1/transfers/${id}`)).status, 200);
    const ledgerBefore = await stockLedger();
    const approve = await destinationManager.post(`/v1/transfers/${id}/approve`);
    assert.equal(approve.status, 403, `approve by the destination answered ${approve.status} ${JSON.stringify(approve.body)}`);
    assert.equal(approve.body.code, 'forbidden');
    assert.match(approve.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal((await owner.get(`/v1/transfers/${id}`)).body.status, 'requested');
    assert.equal(await stockLedger(), ledgerBefore);
    // A third store's manager does not see it: 404, exactly as if it did not exist.
    assert.equal((await outsider.get(`/v1/transfers/${id}`)).status, 404);
    assert.equal((await outsider.post(`/v1/transfers/${id}/approve`)).status, 404);

    assert.equal((await sourceManager.post(`/v1/transfers/${id}/approve`)).status, 200);
    // The source's manager sees it too, so receiving it (the destination's action) is 403, and nothing is written.
    assert.equal((await sourceManager.get(`/v1/transfers/${id}`)).status, 200);
    const beforeReceive = await stockLedger();
    const receive = await sourceManager.post(`/v1/transfers/${id}/receive`);
    assert.equal(receive.status, 403, `receive by the source answered ${receive.status} ${JSON.stringify(receive.body)}`);
    assert.equal(receive.body.code, 'forbidden');
    assert.equal((await owner.get(`/v1/transfers/${id}`)).body.status, 'approved');
    assert.equal(await stockLedger(), beforeReceive);
    assert.equal((await outsider.post(`/v1/transfers/${id}/receive`)).status, 404);
    assert.equal((await destinationManager.post(`/v1/transfers/${id}/receive`)).status, 200);
  });
  it('GET /v1/analytics/daily-sales: a store_id that is not one of the tenant\'s stores is 404 for every token, as for GET /v1/stores/{store_id}/stock (API.md: outside the tenant = as if it did not exist)', async () => {
    const { owner: stranger } = await t.newTenant();
    const strangersStore = await givenStore(stranger, 'THEIRS');
    const missing = '00000000-0000-4000-8000-0000000000ab';
    const scoped = await givenToken(t, owner, 'manager', [store]);
    for (const [label, client, storeId] of [
      ['unknown store, unlimited token', owner, missing],
      ['another tenant\'s store, unlimited token', owner, strangersStore],
      ['unknown store, store-limited token', scoped, missing],
      ['a store outside the token\'s scope', scoped, otherStore],
    ] as const) {
      const stock = await client.get(`/v1/stores/${storeId}/stock`);
      const daily = await client.get(`/v1/analytics/daily-sales?store_id=${storeId}&from=2026-03-01&to=2026-03-02`);
      assert.equal(stock.status, 404, `${label}: stock answered ${stock.status}`);
      assert.equal(daily.status, 404, `${label}: daily-sales answered ${daily.status} ${JSON.stringify(daily.body)}`);
      assert.equal(daily.body.code, 'not_found');
    }
    assert.equal((await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=2026-03-01&to=2026-03-02`)).status, 200, 'one of its own stores');
  });
});
