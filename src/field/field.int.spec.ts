import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { offsetNorth } from './geofence.js';
import { fieldChecks } from './integrity.js';

const SHOP = { latitude: -1.286389, longitude: 36.817223 };

describe('field sales: points of sale, visits, consignments', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let manager: ApiClient;
  let agent: ApiClient;
  let otherAgent: ApiClient;
  let agentId: string;
  let otherAgentId: string;
  let store: { id: string };
  let otherStore: { id: string };
  let soap: { id: string; price: number };
  let rice: { id: string };
  let pos: { id: string };
  let idempotency = 0;

  const key = () => ({ idempotencyKey: `field-${++idempotency}` });

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body;
    otherStore = (await owner.post('/v1/stores', { code: 'FAR', name: 'Far depot' })).body;
    soap = (await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap bar', unit: 'piece', price: 120 })).body;
    rice = (await owner.post('/v1/skus', { code: 'RICE', name: 'Rice', unit: 'kg', price: 900 })).body;
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: soap.id, quantity: 100 }, { sku_id: rice.id, quantity: 50_000 }] });
    const mk = async (name: string, role: string, storeIds?: string[]) => {
      const response = await owner.post('/v1/tokens', { name, role, ...(storeIds ? { store_ids: storeIds } : {}) });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      return response.body as { id: string; token: string };
    };
    const managerToken = await mk('manager', 'manager', [store.id]);
    const agentToken = await mk('amina', 'field_agent', [store.id]);
    const otherAgentToken = await mk('brian', 'field_agent', [store.id]);
    manager = t.client(managerToken.token);
    agent = t.client(agentToken.token);
    otherAgent = t.client(otherAgentToken.token);
    agentId = agentToken.id;
    otherAgentId = otherAgentToken.id;
    const created = await manager.post('/v1/points-of-sale', { name: 'Kiosk 7', store_id: store.id, ...SHOP }, key());
    assert.equal(created.status, 201, JSON.stringify(created.body));
    pos = created.body;
  });
  after(() => t.close());

  const snapshot = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM points_of_sale WHERE tenant_id = $1)::int AS points_of_sale,
                (SELECT count(*) FROM visits WHERE tenant_id = $1)::int AS visits,
                (SELECT count(*) FROM visits WHERE tenant_id = $1 AND status = 'completed')::int AS completed_visits,
                (SELECT count(*) FROM consignments WHERE tenant_id = $1)::int AS consignments,
                (SELECT count(*) FROM consignment_lines WHERE tenant_id = $1)::int AS consignment_lines,
                (SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1)::int AS settlements,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT coalesce(sum(quantity), 0)::int FROM stock_balances WHERE tenant_id = $1) AS stock,
                (SELECT string_agg(coalesce(last_visit_at::text, '-'), ',' ORDER BY id) FROM points_of_sale WHERE tenant_id = $1) AS last_visits`,
        [tenantId],
      )
    ).rows[0];

  const stockOf = async (skuId: string, storeId = store.id) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2', [storeId, skuId])).rows[0]?.quantity ?? 0);

  const schedule = async (agentTokenId = agentId, pointOfSaleId = pos.id) => {
    const response = await manager.post('/v1/visits', { point_of_sale_id: pointOfSaleId, agent_token_id: agentTokenId, scheduled_for: new Date().toISOString() }, key());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; status: string };
  };

  const runChecks = async () => {
    const findings: Array<{ check: string; subject: string }> = [];
    for (const check of fieldChecks) {
      const rows = (await t.admin.query(check.sql, [tenantId])).rows;
      for (const row of rows) findings.push({ check: check.name, subject: row.subject });
    }
    return findings;
  };

  function assertProblem(response: ApiResponse, status: number, code: string) {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, code);
  }

  it('creates and lists points of sale; an agent sees the ones of their stores', async () => {
    const farPos = await owner.post('/v1/points-of-sale', { name: 'Far kiosk', store_id: otherStore.id, latitude: 10, longitude: 10 }, key());
    assert.equal(farPos.status, 201);
    assert.equal((await agent.get(`/v1/points-of-sale/${farPos.body.id}`)).status, 404);
    const listed = await agent.get('/v1/points-of-sale');
    assert.deepEqual(listed.body.items.map((p: { id: string }) => p.id), [pos.id]);
    const one = await agent.get(`/v1/points-of-sale/${pos.id}`);
    assert.equal(one.body.latitude, SHOP.latitude);
    assert.equal(one.body.last_visit_at, null);
    // A manager of another store cannot place a point of sale there.
    assertProblem(await manager.post('/v1/points-of-sale', { name: 'X', store_id: otherStore.id, latitude: 0, longitude: 0 }), 404, 'not_found');
  });

  it('an agent cannot create points of sale or visits (403)', async () => {
    const before = await snapshot();
    assertProblem(await agent.post('/v1/points-of-sale', { name: 'Mine', store_id: store.id, ...SHOP }), 403, 'forbidden');
    assertProblem(await agent.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agentId, scheduled_for: new Date().toISOString() }), 403, 'forbidden');
    assert.deepEqual(await snapshot(), before);
  });

  const badInputs: Array<[string, () => Promise<ApiResponse>, number, string]> = [
    ['latitude above 90', () => manager.post('/v1/points-of-sale', { name: 'N', store_id: store.id, latitude: 90.5, longitude: 0 }), 400, 'validation_failed'],
    ['longitude below -180', () => manager.post('/v1/points-of-sale', { name: 'N', store_id: store.id, latitude: 0, longitude: -181 }), 400, 'validation_failed'],
    ['latitude as text', () => manager.post('/v1/points-of-sale', { name: 'N', store_id: store.id, latitude: '1.5', longitude: 0 }), 400, 'validation_failed'],
    ['unknown store', () => owner.post('/v1/points-of-sale', { name: 'N', store_id: '00000000-0000-4000-8000-000000000009', latitude: 0, longitude: 0 }), 404, 'not_found'],
    ['visit for a non-agent token', () => manager.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: '00000000-0000-4000-8000-000000000009', scheduled_for: new Date().toISOString() }), 400, 'validation_failed'],
    ['visit with a bad date', () => manager.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agentId, scheduled_for: 'tomorrow' }), 400, 'validation_failed'],
    ['visit to an unknown point of sale', () => manager.post('/v1/visits', { point_of_sale_id: '00000000-0000-4000-8000-000000000009', agent_token_id: agentId, scheduled_for: new Date().toISOString() }), 404, 'not_found'],
  ];
  for (const [name, send, status, code] of badInputs) {
    it(`bad input: ${name} → ${status} ${code}, nothing written`, async () => {
      const before = await snapshot();
      assertProblem(await send(), status, code);
      assert.deepEqual(await snapshot(), before);
    });
  }

  it('a store-limited manager is not told whether a token outside its stores exists, its role or its revocation', async () => {
    const mk = async (name: string, role: string, storeIds?: string[]) =>
      (await owner.post('/v1/tokens', { name, role, ...(storeIds ? { store_ids: storeIds } : {}) })).body as { id: string };
    const farAgent = await mk('far agent', 'field_agent', [otherStore.id]);
    const wideCashier = await mk('wide cashier', 'cashier');
    const revokedFar = await mk('revoked far agent', 'field_agent', [otherStore.id]);
    assert.equal((await owner.post(`/v1/tokens/${revokedFar.id}/revoke`, {})).status, 200);
    const messages = new Set<string>();
    for (const tokenId of ['00000000-0000-4000-8000-000000000009', farAgent.id, wideCashier.id, revokedFar.id]) {
      const before = await snapshot();
      const response = await manager.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: tokenId, scheduled_for: new Date().toISOString() }, key());
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors.map((e: { path: string }) => e.path), ['/body/agent_token_id']);
      messages.add(JSON.stringify([response.body.detail, response.body.errors]));
      assert.deepEqual(await snapshot(), before);
    }
    assert.equal(messages.size, 1, [...messages].join('\n'));
    // A tenant-wide token keeps the precise reason.
    const ownerAnswer = await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: wideCashier.id, scheduled_for: new Date().toISOString() }, key());
    assertProblem(ownerAnswer, 400, 'validation_failed');
    assert.match(ownerAnswer.body.errors[0].message, /role cashier/);
  });

  it('GET /v1/visits pages through visits scheduled within one millisecond (microseconds apart) once each, and ends', async () => {
    const scheduled: string[] = [];
    for (const micro of ['100100', '100200', '100300']) {
      const r = await manager.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: otherAgentId, scheduled_for: `2031-01-01T10:00:00.${micro}Z` }, key());
      assert.equal(r.status, 201, JSON.stringify(r.body));
      scheduled.push(r.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 50; page++) {
      const r: { status: number; body: { items: Array<{ id: string }>; next_cursor: string | null } } = await manager.get(
        `/v1/visits?limit=1&agent_token_id=${otherAgentId}${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(r.status, 200);
      seen.push(...r.body.items.map((v) => v.id));
      cursor = r.body.next_cursor;
      if (!cursor) break;
    }
    assert.equal(cursor, null, 'the listing ends');
    assert.equal(new Set(seen).size, seen.length, 'no visit twice');
    assert.deepEqual(seen.filter((id) => scheduled.includes(id)), scheduled, 'each in order');
  });

  it('an agent sees only their own visits; someone else\'s visit is 404', async () => {
    const mine = await schedule(agentId);
    const theirs = await schedule(otherAgentId);
    const listed = await agent.get('/v1/visits?status=scheduled');
    const ids = listed.body.items.map((v: { id: string }) => v.id);
    assert.ok(ids.includes(mine.id));
    assert.ok(!ids.includes(theirs.id));
    assert.equal((await agent.get(`/v1/visits/${theirs.id}`)).status, 404);
    assert.equal((await agent.get(`/v1/visits/${mine.id}`)).body.visit.status, 'scheduled');

    const before = await snapshot();
    const response = await agent.post(`/v1/visits/${theirs.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }] });
    assertProblem(response, 404, 'not_found');
    assert.deepEqual(await snapshot(), before);
  });

  it("an agent who names another agent in GET /v1/visits?agent_token_id= is refused (403 forbidden, reason own_visits_only), not answered an empty list; its own id and a manager's filter are listed as before", async () => {
    const mine = await schedule(agentId);
    const theirs = await schedule(otherAgentId);
    const refused = await agent.get(`/v1/visits?agent_token_id=${otherAgentId}`);
    assertProblem(refused, 403, 'forbidden');
    assert.equal(refused.body.reason, 'own_visits_only');
    assert.match(refused.body.detail, /own visits/);
    // an id that is no token at all gets the same answer (an agent learns nothing of the tenant's tokens)
    const unknown = await agent.get('/v1/visits?agent_token_id=00000000-0000-4000-8000-00000000beef&status=scheduled');
    assertProblem(unknown, 403, 'forbidden');
    assert.equal(unknown.body.reason, 'own_visits_only');

    const own = await agent.get(`/v1/visits?agent_token_id=${agentId}&limit=500`);
    assert.equal(own.status, 200);
    const ownIds = own.body.items.map((v: { id: string }) => v.id);
    assert.ok(ownIds.includes(mine.id) && !ownIds.includes(theirs.id));
    const managed = await manager.get(`/v1/visits?agent_token_id=${otherAgentId}&limit=500`);
    assert.equal(managed.status, 200);
    assert.ok(managed.body.items.some((v: { id: string }) => v.id === theirs.id));
    assert.ok(managed.body.items.every((v: { agent_token_id: string }) => v.agent_token_id === otherAgentId));
  });

  it('geofence inside (150 m): consignment, stock out through the ledger, point of sale and visit updated in one operation', async () => {
    const visit = await schedule();
    const soapBefore = await stockOf(soap.id);
    const response = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 150), lines: [{ sku_id: soap.id, quantity: 10 }, { sku_id: rice.id, quantity: 2500, unit_price: 800 }] }, key());
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const { visit: done, consignment, settlement } = response.body;
    assert.equal(done.status, 'completed');
    assert.equal(done.completed_distance_m, 150);
    assert.equal(settlement, null);
    assert.equal(consignment.status, 'open');
    assert.deepEqual(
      consignment.lines.map((l: { sku_id: string; quantity: number; unit_price: number }) => [l.sku_id, l.quantity, l.unit_price]).sort(),
      [[soap.id, 10, 120], [rice.id, 2500, 800]].sort(),
    );
    // Then: the rows
    assert.equal(await stockOf(soap.id), soapBefore - 10);
    const ledger = (await t.admin.query(`SELECT sku_id, quantity_change, kind FROM stock_ledger WHERE op_id = $1 ORDER BY sku_id`, [done.completed_by_op])).rows;
    assert.equal(ledger.length, 2);
    assert.ok(ledger.every((row) => row.kind === 'consignment_out'));
    const consignmentRow = (await t.admin.query('SELECT op_id, visit_id FROM consignments WHERE id = $1', [consignment.id])).rows[0];
    assert.equal(consignmentRow.op_id, done.completed_by_op);
    const pointOfSale = (await t.admin.query('SELECT last_visit_at, last_visit_id FROM points_of_sale WHERE id = $1', [pos.id])).rows[0];
    assert.equal(pointOfSale.last_visit_id, visit.id);
    assert.equal(new Date(pointOfSale.last_visit_at).toISOString(), new Date(done.completed_at).toISOString());
    assert.deepEqual(await runChecks(), []);
  });

  it('geofence on the edge (exactly 200 m) is inside', async () => {
    const visit = await schedule();
    const response = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 200), lines: [] });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.visit.completed_distance_m, 200);
    assert.equal(response.body.consignment, null);
  });

  it('geofence outside (201 m and 5 km): 422 geofence_violation with the distance, nothing written', async () => {
    const visit = await schedule();
    for (const metres of [201, 5000]) {
      const before = await snapshot();
      const response = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, metres), lines: [{ sku_id: soap.id, quantity: 1 }] }, key());
      assertProblem(response, 422, 'geofence_violation');
      assert.equal(response.body.distance_m, metres);
      assert.equal(response.body.radius_m, 200);
      assert.deepEqual(await snapshot(), before);
    }
    assert.equal((await agent.get(`/v1/visits/${visit.id}`)).body.visit.status, 'scheduled');
  });

  it('the tenant setting geofence_radius_m widens the fence', async () => {
    const visit = await schedule();
    assert.equal((await owner.patch('/v1/tenant/settings', { geofence_radius_m: 1000 })).status, 200);
    try {
      const response = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 900), lines: [] });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.visit.completed_distance_m, 900);
    } finally {
      assert.equal((await owner.patch('/v1/tenant/settings', { geofence_radius_m: 200 })).status, 200);
    }
  });

  it('coordinates out of range or missing lines are validation errors; nothing written', async () => {
    const visit = await schedule();
    for (const body of [
      { latitude: 91, longitude: 0, lines: [] },
      { latitude: 0, longitude: 180.01, lines: [] },
      { latitude: SHOP.latitude, lines: [] },
      { ...SHOP, lines: [{ sku_id: soap.id, quantity: 0 }] },
      { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1.5 }] },
      { ...SHOP, lines: [{ sku_id: '00000000-0000-4000-8000-000000000009', quantity: 1 }] },
      { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }, { sku_id: soap.id, quantity: 2 }] },
      // Goods worth more than the settlement could ever book (a line, then the whole consignment).
      { ...SHOP, lines: [{ sku_id: soap.id, quantity: 2, unit_price: 9_000_000_000_000 }] },
      { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1, unit_price: 9_000_000_000_000 }, { sku_id: rice.id, quantity: 1000, unit_price: 1000 }] },
    ]) {
      const before = await snapshot();
      assertProblem(await agent.post(`/v1/visits/${visit.id}/complete`, body), 400, 'validation_failed');
      assert.deepEqual(await snapshot(), before, JSON.stringify(body));
    }
  });

  it('insufficient stock: 409 with shortages, nothing written', async () => {
    const visit = await schedule();
    const before = await snapshot();
    const response = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1_000 }] });
    assertProblem(response, 409, 'insufficient_stock');
    assert.deepEqual(response.body.shortages, [{ sku_id: soap.id, requested: 1000, available: await stockOf(soap.id) }]);
    assert.deepEqual(await snapshot(), before);
  });

  it('completing a completed visit: the same goods and settlement (any key, any position) replay 200; other goods are 409 — never a silent success', async () => {
    const visit = await schedule();
    const body = { ...SHOP, lines: [{ sku_id: soap.id, quantity: 3 }] };
    const first = await agent.post(`/v1/visits/${visit.id}/complete`, body, key());
    assert.equal(first.status, 200);
    const before = await snapshot();
    // The same body under another key (or none): the visit is done, its result is returned.
    const againKey = key();
    for (const again of [await agent.post(`/v1/visits/${visit.id}/complete`, body, againKey), await agent.post(`/v1/visits/${visit.id}/complete`, body)]) {
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, first.body);
    }
    // A retry that re-read its position (same goods, other coordinates) is the same completion.
    const moved = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 30), lines: body.lines }, key());
    assert.equal(moved.status, 200);
    assert.equal(moved.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(moved.body, first.body);
    assert.deepEqual(await snapshot(), before);
    // The same goods listed in another order are the same completion too.
    const two = await schedule();
    const listed = [{ sku_id: soap.id, quantity: 2 }, { sku_id: rice.id, quantity: 500 }];
    const firstKey = key();
    const done = await agent.post(`/v1/visits/${two.id}/complete`, { ...SHOP, lines: listed }, firstKey);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    const afterTwo = await snapshot();
    // …under its first key as well (a retry after a lost answer)
    const retried = await agent.post(`/v1/visits/${two.id}/complete`, { ...SHOP, lines: [...listed].reverse() }, firstKey);
    assert.equal(retried.status, 200, JSON.stringify(retried.body));
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(retried.body, done.body);
    const reordered = await agent.post(`/v1/visits/${two.id}/complete`, { ...SHOP, lines: [...listed].reverse() }, key());
    assert.equal(reordered.status, 200, JSON.stringify(reordered.body));
    assert.equal(reordered.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(reordered.body, done.body);
    assert.deepEqual(await snapshot(), afterTwo);
    // Other goods (a second device): refused, so it knows nothing of it was recorded.
    const other = await agent.post(`/v1/visits/${visit.id}/complete`, { ...offsetNorth(SHOP, 50), lines: [{ sku_id: soap.id, quantity: 7 }] }, key());
    assertProblem(other, 409, 'invalid_transition');
    assert.equal(other.body.current_status, 'completed');
    assert.deepEqual(await snapshot(), afterTwo);
    // The key of a replayed completion is kept: it cannot complete another visit.
    const three = await schedule();
    assertProblem(await agent.post(`/v1/visits/${three.id}/complete`, body, againKey), 422, 'idempotency_key_reused');
    assert.equal((await t.admin.query(`SELECT status FROM visits WHERE id = $1`, [three.id])).rows[0].status, 'scheduled');
  });

  it("an Idempotency-Key of another agent's completion is 404 for an agent who may not see that visit, not a replay", async () => {
    const visit = await schedule();
    const sharedKey = key();
    const body = { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }] };
    assert.equal((await agent.post(`/v1/visits/${visit.id}/complete`, body, sharedKey)).status, 200);
    const replayByOther = await otherAgent.post(`/v1/visits/${visit.id}/complete`, body, sharedKey);
    assertProblem(replayByOther, 404, 'not_found');
    assert.equal(replayByOther.headers.get('idempotent-replayed'), null);
  });

  it('two concurrent completions of one visit: one takes effect, the other replays it', async () => {
    const visit = await schedule();
    const soapBefore = await stockOf(soap.id);
    const responses = await Promise.all([1, 2, 3].map(() => agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 2 }] })));
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.equal(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 2);
    assert.equal(await stockOf(soap.id), soapBefore - 2);
    assert.equal(Number((await t.admin.query('SELECT count(*) FROM consignments WHERE visit_id = $1', [visit.id])).rows[0].count), 1);
  });

  it('a crash between the writes (the visit status update fails) leaves none of them', async () => {
    const visit = await schedule();
    await t.admin.query(`
      CREATE FUNCTION test_crash_on_visit_complete() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status = 'completed' THEN RAISE EXCEPTION 'injected crash before the visit status update'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_crash BEFORE UPDATE ON visits FOR EACH ROW EXECUTE FUNCTION test_crash_on_visit_complete();`);
    try {
      const before = await snapshot();
      const soapBefore = await stockOf(soap.id);
      const response = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 5 }] }, key());
      assertProblem(response, 500, 'internal_error');
      // Then: no consignment, no ledger row, no point-of-sale change, no stock change.
      assert.deepEqual(await snapshot(), before);
      assert.equal(await stockOf(soap.id), soapBefore);
      assert.equal(Number((await t.admin.query('SELECT count(*) FROM consignments WHERE visit_id = $1', [visit.id])).rows[0].count), 0);
    } finally {
      await t.admin.query('DROP TRIGGER test_crash ON visits; DROP FUNCTION test_crash_on_visit_complete()');
    }
    // And the same visit completes normally afterwards.
    const retried = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 5 }] });
    assert.equal(retried.status, 200);
  });

  it('the next visit settles the consignment: sold → money owed, returned → back to stock', async () => {
    // Given a fresh point of sale with goods left on a first visit
    const kiosk = (await manager.post('/v1/points-of-sale', { name: 'Kiosk 9', store_id: store.id, ...SHOP }, key())).body;
    assert.ok(kiosk.party_id, 'a customer party is created with the point of sale');
    const first = await schedule(agentId, kiosk.id);
    const left = await agent.post(`/v1/visits/${first.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 8 }, { sku_id: rice.id, quantity: 4000, unit_price: 1 }] });
    assert.equal(left.status, 200);
    const consignmentId = left.body.consignment.id;
    const open = await agent.get(`/v1/points-of-sale/${kiosk.id}/consignments`);
    assert.deepEqual(open.body.items.map((c: { id: string }) => c.id), [consignmentId]);

    const soapBefore = await stockOf(soap.id);
    const riceBefore = await stockOf(rice.id);
    const second = await schedule(agentId, kiosk.id);

    // Bad settlements are refused, nothing written
    for (const settlement of [
      { consignment_id: consignmentId, lines: [{ sku_id: soap.id, sold_quantity: 5, returned_quantity: 1 }, { sku_id: rice.id, sold_quantity: 4000, returned_quantity: 0 }] },
      { consignment_id: consignmentId, lines: [{ sku_id: soap.id, sold_quantity: 8, returned_quantity: 0 }] },
      { consignment_id: '00000000-0000-4000-8000-000000000009', lines: [{ sku_id: soap.id, sold_quantity: 8, returned_quantity: 0 }] },
    ]) {
      const before = await snapshot();
      assertProblem(await agent.post(`/v1/visits/${second.id}/complete`, { ...SHOP, lines: [], settlement }), 400, 'validation_failed');
      assert.deepEqual(await snapshot(), before);
    }
    // A SKU that does not exist is reported at its settlement line
    const unknownSku = await agent.post(`/v1/visits/${second.id}/complete`, {
      ...SHOP,
      lines: [],
      settlement: { consignment_id: consignmentId, lines: [{ sku_id: soap.id, sold_quantity: 8, returned_quantity: 0 }, { sku_id: rice.id, sold_quantity: 4000, returned_quantity: 0 }, { sku_id: '00000000-0000-4000-8000-00000000000a', sold_quantity: 1, returned_quantity: 0 }] },
    });
    assertProblem(unknownSku, 400, 'validation_failed');
    assert.deepEqual(unknownSku.body.errors.map((e: { path: string }) => e.path), ['/body/settlement/lines/2/sku_id']);

    // When the agent reports 5 soap sold and 3 returned, all rice sold, and leaves 6 soap again
    const response = await agent.post(
      `/v1/visits/${second.id}/complete`,
      {
        ...SHOP,
        lines: [{ sku_id: soap.id, quantity: 6 }],
        settlement: { consignment_id: consignmentId, lines: [{ sku_id: soap.id, sold_quantity: 5, returned_quantity: 3 }, { sku_id: rice.id, sold_quantity: 4000, returned_quantity: 0 }] },
      },
      key(),
    );
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const { settlement, consignment } = response.body;
    // Soap: 5 pieces × 120. Rice: 4,000 g at 1 per kg, as a sale would total it = 4.
    assert.equal(settlement.amount_owed, 5 * 120 + 4);
    // The money owed is posted: the point of sale's party receivable against the store's sales revenue.
    assert.ok(settlement.journal_entry_id);
    const postings = (
      await t.admin.query(
        `SELECT a.kind, a.party_id, a.store_id, p.amount FROM postings p JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
         WHERE p.entry_id = $1 ORDER BY a.kind`,
        [settlement.journal_entry_id],
      )
    ).rows.map((row) => [row.kind, row.party_id ?? row.store_id, Number(row.amount)]);
    assert.deepEqual(postings, [['receivable', kiosk.party_id, 604], ['sales_revenue', store.id, -604]]);
    const receivable = (await t.admin.query(`SELECT balance FROM accounts WHERE party_id = $1`, [kiosk.party_id])).rows[0];
    assert.equal(Number(receivable.balance), 604);
    assert.equal(settlement.consignment_id, consignmentId);
    // Then: returned soap came back, new soap left; rice unchanged (all sold)
    assert.equal(await stockOf(soap.id), soapBefore + 3 - 6);
    assert.equal(await stockOf(rice.id), riceBefore);
    const ledger = (await t.admin.query(`SELECT kind, quantity_change FROM stock_ledger WHERE op_id = $1 ORDER BY kind`, [response.body.visit.completed_by_op])).rows;
    assert.deepEqual(ledger.map((row) => [row.kind, Number(row.quantity_change)]), [['consignment_out', -6], ['consignment_return', 3]]);
    const settled = (await t.admin.query('SELECT status, settled_by_op FROM consignments WHERE id = $1', [consignmentId])).rows[0];
    assert.deepEqual(settled, { status: 'settled', settled_by_op: response.body.visit.completed_by_op });
    // The operation names every row it wrote, the lines of the consignment left and of the settlement included
    const operation = await manager.get(`/v1/operations/${response.body.visit.completed_by_op}`);
    assert.equal(operation.status, 200);
    const effects = operation.body.effects as Array<{ table: string; id: string; action: string }>;
    const idsOf = (table: string) => effects.filter((effect) => effect.table === table && effect.action === 'created').map((effect) => effect.id).sort();
    for (const table of ['consignment_lines', 'consignment_settlement_lines']) {
      const { rows } = await t.admin.query(`SELECT id::text FROM ${table} WHERE op_id = $1 ORDER BY 1`, [response.body.visit.completed_by_op]);
      assert.equal(rows.length, table === 'consignment_lines' ? 1 : 2);
      assert.deepEqual(idsOf(table), rows.map((row) => row.id), table);
    }
    const nowOpen = await agent.get(`/v1/points-of-sale/${kiosk.id}/consignments`);
    assert.deepEqual(nowOpen.body.items.map((c: { id: string }) => c.id), [consignment.id]);

    // Settling the same consignment twice is refused
    const third = await schedule(agentId, kiosk.id);
    const before = await snapshot();
    assertProblem(
      await agent.post(`/v1/visits/${third.id}/complete`, { ...SHOP, lines: [], settlement: { consignment_id: consignmentId, lines: [{ sku_id: soap.id, sold_quantity: 8, returned_quantity: 0 }, { sku_id: rice.id, sold_quantity: 4000, returned_quantity: 0 }] } }),
      409,
      'invalid_transition',
    );
    assert.deepEqual(await snapshot(), before);
    assert.deepEqual(await runChecks(), []);
  });

  it('completing a completed visit again after a later visit settled its consignment answers what the completion answered, under any key', async () => {
    const kiosk = (await manager.post('/v1/points-of-sale', { name: 'Kiosk 11', store_id: store.id, ...SHOP }, key())).body;
    const first = await schedule(agentId, kiosk.id);
    const body = { ...SHOP, lines: [{ sku_id: soap.id, quantity: 4 }] };
    const firstKey = key();
    const left = await agent.post(`/v1/visits/${first.id}/complete`, body, firstKey);
    assert.equal(left.status, 200, JSON.stringify(left.body));
    assert.equal(left.body.consignment.status, 'open');
    // A later visit settles what the first one left.
    const second = await schedule(agentId, kiosk.id);
    const settled = await agent.post(
      `/v1/visits/${second.id}/complete`,
      { ...SHOP, lines: [], settlement: { consignment_id: left.body.consignment.id, lines: [{ sku_id: soap.id, sold_quantity: 1, returned_quantity: 3 }] } },
      key(),
    );
    assert.equal(settled.status, 200, JSON.stringify(settled.body));
    const before = await snapshot();
    // The first completion retried: under its own key (the stored answer), under another key, and under none —
    // one request, one answer: the one the completion gave.
    for (const retried of [
      await agent.post(`/v1/visits/${first.id}/complete`, body, firstKey),
      await agent.post(`/v1/visits/${first.id}/complete`, body, key()),
      await agent.post(`/v1/visits/${first.id}/complete`, body),
    ]) {
      assert.equal(retried.status, 200, JSON.stringify(retried.body));
      assert.equal(retried.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(retried.body, left.body);
    }
    assert.deepEqual(await snapshot(), before);
    // The consignment itself is settled, as its own read says.
    assert.equal((await agent.get(`/v1/visits/${first.id}`)).body.consignment.status, 'settled');
  });

  it('open consignments of a point of sale are listed in pages (limit, cursor)', async () => {
    const stall = (await manager.post('/v1/points-of-sale', { name: 'Stall 3', store_id: store.id, ...SHOP }, key())).body;
    const left: string[] = [];
    for (let i = 0; i < 3; i++) {
      const visit = await schedule(agentId, stall.id);
      const done = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }] });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      left.push(done.body.consignment.id);
    }
    const first = await agent.get(`/v1/points-of-sale/${stall.id}/consignments?limit=2`);
    assert.equal(first.status, 200);
    assert.equal(first.body.items.length, 2);
    assert.ok(first.body.next_cursor);
    const second = await agent.get(`/v1/points-of-sale/${stall.id}/consignments?limit=2&cursor=${first.body.next_cursor}`);
    assert.equal(second.body.items.length, 1);
    assert.equal(second.body.next_cursor, null);
    assert.deepEqual([...first.body.items, ...second.body.items].map((c: { id: string }) => c.id), [...left].sort());
  });

  it('integrity: a consignment whose visit is not completed is reported by that check only (and the point of sale that names the visit as its last, by point_of_sale_last_visit)', async () => {
    const visit = await schedule();
    const done = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }] });
    assert.equal(done.status, 200);
    assert.deepEqual(await runChecks(), []);
    // as text: put back to the microsecond (the point of sale's last_visit_at is that time)
    const { completed_at: completedAt } = (await t.admin.query(`SELECT completed_at::text FROM visits WHERE id = $1`, [visit.id])).rows[0];
    await t.admin.query(`UPDATE visits SET status = 'scheduled', completed_at = NULL, completed_by_op = NULL WHERE id = $1`, [visit.id]);
    try {
      assert.deepEqual(await runChecks(), [
        { check: 'consignment_visit_completed', subject: `consignment:${done.body.consignment.id}` },
        { check: 'point_of_sale_last_visit', subject: `point_of_sale:${pos.id}` },
      ]);
    } finally {
      await t.admin.query(`UPDATE visits SET status = 'completed', completed_at = $3::timestamptz, completed_by_op = $2 WHERE id = $1`, [visit.id, done.body.visit.completed_by_op, completedAt]);
    }
    assert.deepEqual(await runChecks(), []);
  });

  it('integrity: consignment lines that do not match the stock ledger are reported by that check only', async () => {
    const visit = await schedule();
    const done = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 2 }] });
    assert.equal(done.status, 200);
    const client = await t.admin.connect();
    try {
      await client.query(`SET session_replication_role = replica`);
      await client.query(`UPDATE consignment_lines SET quantity = 3 WHERE consignment_id = $1`, [done.body.consignment.id]);
      const findings = await runChecks();
      assert.deepEqual(findings.map((f) => f.check), ['consignment_stock_matches_ledger']);
      await client.query(`UPDATE consignment_lines SET quantity = 2 WHERE consignment_id = $1`, [done.body.consignment.id]);
    } finally {
      await client.query(`SET session_replication_role = origin`);
      client.release();
    }
    assert.deepEqual(await runChecks(), []);
  });

  it('integrity: settlement lines or amounts that do not match the ledgers are reported by their checks only', async () => {
    const kiosk = (await manager.post('/v1/points-of-sale', { name: 'Kiosk 11', store_id: store.id, ...SHOP }, key())).body;
    const first = await schedule(agentId, kiosk.id);
    const left = await agent.post(`/v1/visits/${first.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 4 }] });
    assert.equal(left.status, 200);
    const second = await schedule(agentId, kiosk.id);
    const settled = await agent.post(`/v1/visits/${second.id}/complete`, {
      ...SHOP,
      lines: [],
      settlement: { consignment_id: left.body.consignment.id, lines: [{ sku_id: soap.id, sold_quantity: 3, returned_quantity: 1 }] },
    });
    assert.equal(settled.status, 200, JSON.stringify(settled.body));
    assert.deepEqual(await runChecks(), []);
    const settlementId = settled.body.settlement.id;
    const client = await t.admin.connect();
    try {
      await client.query(`SET session_replication_role = replica`);
      await client.query(`UPDATE consignment_settlement_lines SET returned_quantity = 2 WHERE settlement_id = $1`, [settlementId]);
      // 3 sold + 2 returned of the 4 left: the settlement no longer accounts for its consignment either.
      assert.deepEqual((await runChecks()).map((f) => f.check), ['consignment_settlement_matches_ledger', 'consignment_settlement_accounts_for_consignment']);
      await client.query(`UPDATE consignment_settlement_lines SET returned_quantity = 1 WHERE settlement_id = $1`, [settlementId]);
      // The amount owed (and, consistently, its lines' price) changed after posting: 3 sold × 121 = 363, posted 360.
      await client.query(`UPDATE consignment_settlement_lines SET unit_price = 121 WHERE settlement_id = $1`, [settlementId]);
      await client.query(`UPDATE consignment_settlements SET amount_owed = 363 WHERE id = $1`, [settlementId]);
      // (and the line's price is no longer the one agreed when the goods were left)
      assert.deepEqual(await runChecks(), [
        { check: 'consignment_settlement_accounts_for_consignment', subject: `consignment_settlement:${settlementId}/sku:${soap.id}` },
        { check: 'consignment_settlement_posted', subject: `consignment_settlement:${settlementId}` },
      ]);
      await client.query(`UPDATE consignment_settlement_lines SET unit_price = 120 WHERE settlement_id = $1`, [settlementId]);
      await client.query(`UPDATE consignment_settlements SET amount_owed = 360 WHERE id = $1`, [settlementId]);
      // A sold quantity changed behind the settlement's back: its amount no longer matches its lines.
      await client.query(`UPDATE consignment_settlement_lines SET sold_quantity = 2 WHERE settlement_id = $1`, [settlementId]);
      // (and 2 sold + 1 returned no longer account for the 4 left)
      assert.deepEqual(await runChecks(), [
        { check: 'consignment_settlement_accounts_for_consignment', subject: `consignment_settlement:${settlementId}/sku:${soap.id}` },
        { check: 'consignment_settlement_amount_matches_lines', subject: `consignment_settlement:${settlementId}` },
      ]);
      await client.query(`UPDATE consignment_settlement_lines SET sold_quantity = 3 WHERE settlement_id = $1`, [settlementId]);
    } finally {
      await client.query(`SET session_replication_role = origin`);
      client.release();
    }
    assert.deepEqual(await runChecks(), []);
  });

  it('settlements racing cash sales of the same SKU: every request succeeds (stock is locked before money, as in a sale), books balanced', async () => {
    const item = (await owner.post('/v1/skus', { code: 'RACE-X', name: 'Race item', unit: 'piece', price: 100 })).body;
    assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: item.id, quantity: 10_000 }] })).status, 201);
    const N = 24;
    const stalls: Array<{ id: string }> = [];
    const consignments: string[] = [];
    for (let i = 0; i < N; i++) {
      const stall = (await manager.post('/v1/points-of-sale', { name: `Race ${i}`, store_id: store.id, ...SHOP }, key())).body;
      const visit = await schedule(agentId, stall.id);
      const done = await agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: item.id, quantity: 1 }] });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      stalls.push(stall);
      consignments.push(done.body.consignment.id);
    }
    const visits = [];
    for (const stall of stalls) visits.push(await schedule(agentId, stall.id));
    const responses = await Promise.all([
      ...visits.map((visit, i) =>
        agent.post(`/v1/visits/${visit.id}/complete`, {
          ...SHOP,
          settlement: { consignment_id: consignments[i], lines: [{ sku_id: item.id, sold_quantity: 1, returned_quantity: 0 }] },
          lines: [{ sku_id: item.id, quantity: 1 }],
        }),
      ),
      ...Array.from({ length: N }, () => owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: item.id, quantity: 1, unit_price: 100 }] })),
    ]);
    assert.deepEqual(
      responses.filter((r) => r.status >= 300).map((r) => `${r.status} ${JSON.stringify(r.body).slice(0, 120)}`),
      [],
    );
    // 10,000 − 24 left first − 24 left again − 24 sold at the till
    assert.equal(await stockOf(item.id), 10_000 - 3 * N);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two visits consigning the last units concurrently: exactly one wins, stock never negative', async () => {
    const last = (await owner.post('/v1/skus', { code: 'LAST', name: 'Last units', unit: 'piece', price: 10 })).body;
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: last.id, quantity: 5 }] });
    const visits = [await schedule(), await schedule()];
    const responses = await Promise.all(visits.map((visit) => agent.post(`/v1/visits/${visit.id}/complete`, { ...SHOP, lines: [{ sku_id: last.id, quantity: 4 }] })));
    assert.deepEqual(responses.map((r) => r.status).sort(), [200, 409]);
    const loser = responses.find((r) => r.status === 409);
    assert.equal(loser?.body.code, 'insufficient_stock');
    assert.equal(await stockOf(last.id), 1);
    const out = (await t.admin.query(`SELECT coalesce(sum(quantity_change), 0)::int AS total FROM stock_ledger WHERE sku_id = $1 AND kind = 'consignment_out'`, [last.id])).rows[0];
    assert.equal(out.total, -4);
    const completed = (await t.admin.query(`SELECT count(*)::int AS n FROM visits WHERE id = ANY($1::uuid[]) AND status = 'completed'`, [visits.map((v) => v.id)])).rows[0];
    assert.equal(completed.n, 1);
    assert.deepEqual(await runChecks(), []);
  });

  it('the OpenAPI document describes the field endpoints', async () => {
    const openapi = (await owner.get('/openapi.json')).body;
    for (const path of ['/v1/points-of-sale', '/v1/visits', '/v1/visits/{id}/complete', '/v1/points-of-sale/{id}/consignments']) assert.ok(openapi.paths[path], path);
    assert.ok(openapi.paths['/v1/visits/{id}/complete'].post.requestBody);
  });
});
