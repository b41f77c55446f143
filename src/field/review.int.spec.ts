import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { assertFieldBooksConsistent } from './testkit.js';

const SHOP = { latitude: 48.856613, longitude: 2.352222 };
const OTHER_SHOP = { latitude: 48.8606, longitude: 2.3376 };

/**
 * An adversarial review of field sales: completions racing retries of
 * themselves, settlements and other visits of the same point of sale; bad
 * times at the edges of what the schema and PostgreSQL read. Each test runs
 * real concurrent requests and then checks the rows: every stock balance is
 * its ledger's sum, every journal entry is balanced, consignments hold what
 * the answers said, the integrity checks are clean.
 */
describe('field sales review: retries, races and edges of visit completion', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let manager: ApiClient;
  let agent: ApiClient;
  let otherAgent: ApiClient;
  let agentId: string;
  let otherAgentId: string;
  let storeId: string;
  let otherStoreId: string;
  let soap: string;
  let tea: string;
  let pos: string;
  let pos2: string;
  let farPos: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body.id;
    otherStoreId = (await owner.post('/v1/stores', { code: 'FAR', name: 'Far depot' })).body.id;
    soap = (await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 })).body.id;
    tea = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 300 })).body.id;
    for (const store of [storeId, otherStoreId]) {
      assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: soap, quantity: 1000 }, { sku_id: tea, quantity: 1000 }] })).status, 201);
    }
    const token = async (role: string, stores: string[]) => (await owner.post('/v1/tokens', { name: `${role}-${randomUUID().slice(0, 6)}`, role, store_ids: stores })).body;
    const managerToken = await token('manager', [storeId]);
    const agentToken = await token('field_agent', [storeId]);
    const otherAgentToken = await token('field_agent', [storeId]);
    manager = t.client(managerToken.token);
    agent = t.client(agentToken.token);
    otherAgent = t.client(otherAgentToken.token);
    agentId = agentToken.id;
    otherAgentId = otherAgentToken.id;
    pos = (await manager.post('/v1/points-of-sale', { name: 'Kiosk', store_id: storeId, ...SHOP })).body.id;
    pos2 = (await manager.post('/v1/points-of-sale', { name: 'Stall', store_id: storeId, ...OTHER_SHOP })).body.id;
    farPos = (await owner.post('/v1/points-of-sale', { name: 'Far kiosk', store_id: otherStoreId, ...SHOP })).body.id;
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const schedule = async (pointOfSale = pos, agentTokenId = agentId) => {
    const response = await owner.post('/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agentTokenId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.id as string;
  };
  const stockOf = async (skuId: string, store = storeId) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, store, skuId])).rows[0].quantity);
  const count = async (sqlText: string, params: unknown[]) => Number((await t.admin.query(sqlText, params)).rows[0].count);

  const assertBooksConsistent = () => assertFieldBooksConsistent(t, tenantId);

  const assertProblem = (response: ApiResponse, status: number, code: string) => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.equal(response.headers.get('content-type')?.startsWith('application/problem+json'), true);
    assert.equal(response.body.code, code, JSON.stringify(response.body));
  };

  it('the same completion sent at once from two devices, under two keys and twice under one key: recorded once, the others replay it or are told the key is in flight', async () => {
    for (let round = 0; round < 4; round++) {
      const visit = await schedule();
      const [soapBefore, teaBefore] = [await stockOf(soap), await stockOf(tea)];
      const lines = [{ sku_id: soap, quantity: 3 }, { sku_id: tea, quantity: 2 }];
      const shared = k();
      const answers = await Promise.all([
        agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines }, shared),
        agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines }, shared),
        agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [...lines].reverse() }, k()),
        manager.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines }, k()),
        agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines }),
      ]);
      const fresh = answers.filter((a) => a.status === 200 && a.headers.get('idempotent-replayed') === null);
      const replayed = answers.filter((a) => a.status === 200 && a.headers.get('idempotent-replayed') === 'true');
      const inFlight = answers.filter((a) => a.status === 409 && a.body.code === 'idempotency_key_in_flight');
      assert.equal(fresh.length, 1, JSON.stringify(answers.map((a) => [a.status, a.body.code])));
      assert.equal(fresh.length + replayed.length + inFlight.length, answers.length, JSON.stringify(answers.map((a) => [a.status, a.body])));
      assert.ok(inFlight.length <= 1);
      const consignment = fresh[0]!.body.consignment.id;
      for (const answer of replayed) assert.equal(answer.body.consignment.id, consignment);
      assert.equal(await stockOf(soap), soapBefore - 3);
      assert.equal(await stockOf(tea), teaBefore - 2);
      assert.equal(await count('SELECT count(*) FROM consignments WHERE tenant_id = $1 AND visit_id = $2', [tenantId, visit]), 1);
      assert.equal(await count(`SELECT count(*) FROM stock_ledger WHERE tenant_id = $1 AND kind = 'consignment_out' AND reason = $2`, [tenantId, `consignment ${consignment}`]), 2);
      assert.equal(await count(`SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'visit.complete' AND id = (SELECT completed_by_op FROM visits WHERE id = $2)`, [tenantId, visit]), 1);
    }
    await assertBooksConsistent();
  });

  it('at one point of sale at once: a visit settling the open consignment and leaving goods again, another visit leaving goods, a retry of the first visit: goods and money counted once each', async () => {
    // A point of sale of its own: no open consignments but the ones this test leaves.
    const corner = (await manager.post('/v1/points-of-sale', { name: 'Corner', store_id: storeId, ...SHOP })).body.id as string;
    for (let round = 0; round < 3; round++) {
      const first = await schedule(corner);
      const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
      assert.equal(left.status, 200, JSON.stringify(left.body));
      const c1 = left.body.consignment.id as string;
      const [settler, leaver] = [await schedule(corner, agentId), await schedule(corner, otherAgentId)];
      const [soapBefore, teaBefore] = [await stockOf(soap), await stockOf(tea)];
      const receivableBefore = await count(
        `SELECT coalesce(sum(p.amount), 0) AS count FROM postings p JOIN accounts a ON a.id = p.account_id JOIN points_of_sale s ON s.party_id = a.party_id WHERE s.id = $1`,
        [corner],
      );
      const [settled, leaving, retry] = await Promise.all([
        agent.post(
          `/v1/visits/${settler}/complete`,
          { ...SHOP, lines: [{ sku_id: soap, quantity: 6 }, { sku_id: tea, quantity: 2 }], settlement: { consignment_id: c1, lines: [{ sku_id: soap, sold_quantity: 4, returned_quantity: 6 }] } },
          k(),
        ),
        otherAgent.post(`/v1/visits/${leaver}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 5 }] }, k()),
        agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k()),
      ]);
      assert.equal(settled.status, 200, JSON.stringify(settled.body));
      assert.equal(leaving.status, 200, JSON.stringify(leaving.body));
      assert.equal(retry.status, 200, JSON.stringify(retry.body));
      assert.equal(retry.headers.get('idempotent-replayed'), 'true');
      assert.equal(retry.body.consignment.id, c1);
      assert.equal(retry.body.consignment.status, 'open', 'the replay answers the consignment as that visit left it');
      assert.equal(settled.body.settlement.amount_owed, 4 * 120);
      // soap: 6 back, 6 out again, 5 out; tea: 2 out
      assert.equal(await stockOf(soap), soapBefore + 6 - 6 - 5);
      assert.equal(await stockOf(tea), teaBefore - 2);
      const receivableAfter = await count(
        `SELECT coalesce(sum(p.amount), 0) AS count FROM postings p JOIN accounts a ON a.id = p.account_id JOIN points_of_sale s ON s.party_id = a.party_id WHERE s.id = $1`,
        [corner],
      );
      assert.equal(receivableAfter - receivableBefore, 4 * 120);
      assert.equal((await t.admin.query('SELECT status FROM consignments WHERE id = $1', [c1])).rows[0].status, 'settled');
      assert.equal(await count(`SELECT count(*) FROM consignment_settlements WHERE consignment_id = $1`, [c1]), 1);
      // Settle both open consignments so the next round starts from one open consignment of its own.
      const open = (await agent.get(`/v1/points-of-sale/${corner}/consignments`)).body.items as Array<{ id: string; lines: Array<{ sku_id: string; quantity: number }> }>;
      assert.deepEqual(open.map((c) => c.id).sort(), [settled.body.consignment.id, leaving.body.consignment.id].sort());
      for (const consignment of open) {
        const closer = await schedule(corner);
        const closed = await agent.post(
          `/v1/visits/${closer}/complete`,
          { ...SHOP, lines: [], settlement: { consignment_id: consignment.id, lines: consignment.lines.map((l) => ({ sku_id: l.sku_id, sold_quantity: 0, returned_quantity: l.quantity })) } },
          k(),
        );
        assert.equal(closed.status, 200, JSON.stringify(closed.body));
      }
    }
    await assertBooksConsistent();
  });

  it('visits of two points of sale of one store racing for its last units, each also settling its own consignment: stock never negative, each refusal writes nothing', async () => {
    // Leave 30 soap at each point of sale, then drain the store's soap to 40.
    const seeds = await Promise.all([pos, pos2].map(async (p) => {
      const v = await schedule(p);
      const r = await agent.post(`/v1/visits/${v}/complete`, { ...(p === pos ? SHOP : OTHER_SHOP), lines: [{ sku_id: soap, quantity: 30 }] }, k());
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.consignment.id as string;
    }));
    const drain = (await stockOf(soap)) - 40;
    assert.equal((await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: soap, quantity_change: -drain, reason: 'shrinkage' }, k())).status, 201);
    assert.equal(await stockOf(soap), 40);
    const [v1, v2] = [await schedule(pos), await schedule(pos2)];
    const opsBefore = await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]);
    // Each sells 10 and returns 20, then leaves 45: 40 + 20 = 60 covers one of them (60 - 45 = 15), not both (15 + 20 - 45 < 0).
    const [a, b] = await Promise.all([
      agent.post(`/v1/visits/${v1}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 45 }], settlement: { consignment_id: seeds[0], lines: [{ sku_id: soap, sold_quantity: 10, returned_quantity: 20 }] } }, k()),
      agent.post(`/v1/visits/${v2}/complete`, { ...OTHER_SHOP, lines: [{ sku_id: soap, quantity: 45 }], settlement: { consignment_id: seeds[1], lines: [{ sku_id: soap, sold_quantity: 10, returned_quantity: 20 }] } }, k()),
    ]);
    assert.deepEqual([a.status, b.status].sort(), [200, 409], JSON.stringify([a.body, b.body]));
    const lost = a.status === 409 ? a : b;
    assert.equal(lost.body.code, 'insufficient_stock');
    assert.equal(await stockOf(soap), 15);
    assert.equal(await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]), opsBefore + 1);
    const lostSeed = lost === a ? seeds[0] : seeds[1];
    assert.equal((await t.admin.query('SELECT status FROM consignments WHERE id = $1', [lostSeed])).rows[0].status, 'open', 'the refused visit settled nothing');
    await assertBooksConsistent();
  });

  it("a visit's goods racing a transfer's approval and a cash sale for the supplying store's last units: whatever wins, stock never negative and every balance its ledger", async () => {
    for (let round = 0; round < 4; round++) {
      const lamp = (await owner.post('/v1/skus', { code: `LAMP-${round}`, name: 'Lamp', unit: 'piece', price: 500 })).body.id as string;
      assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: lamp, quantity: 100 }] })).status, 201);
      const transfer = await owner.post('/v1/transfers', { source_store_id: storeId, destination_store_id: otherStoreId, items: [{ sku_id: lamp, quantity: 70 }] }, k());
      assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
      const visit = await schedule(pos2);
      const [approved, completed, sold] = await Promise.all([
        owner.post(`/v1/transfers/${transfer.body.id}/approve`, undefined, k()),
        agent.post(`/v1/visits/${visit}/complete`, { ...OTHER_SHOP, lines: [{ sku_id: lamp, quantity: 60 }] }, k()),
        owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: lamp, quantity: 20, unit_price: 500 }] }, k()),
      ]);
      for (const [response, ok] of [[approved, 200], [completed, 200], [sold, 201]] as const) {
        assert.ok(response.status === ok || (response.status === 409 && response.body.code === 'insufficient_stock'), JSON.stringify(response.body));
      }
      const taken = (approved.status === 200 ? 70 : 0) + (completed.status === 200 ? 60 : 0) + (sold.status === 201 ? 20 : 0);
      assert.ok(taken <= 100 && taken >= 60, `taken ${taken}`);
      assert.equal(await stockOf(lamp), 100 - taken);
      assert.equal(await count('SELECT count(*) FROM consignments WHERE tenant_id = $1 AND visit_id = $2', [tenantId, visit]), completed.status === 200 ? 1 : 0);
      assert.equal((await t.admin.query('SELECT status FROM visits WHERE id = $1', [visit])).rows[0].status, completed.status === 200 ? 'completed' : 'scheduled');
    }
    await assertBooksConsistent();
  });

  it('scheduled_for that the date-time format lets through but PostgreSQL cannot read (year 0, an offset beyond 15 hours) is a 400 at /body/scheduled_for, nothing written', async () => {
    const visitsBefore = await count('SELECT count(*) FROM visits WHERE tenant_id = $1', [tenantId]);
    const opsBefore = await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]);
    for (const bad of ['0000-06-01T10:00:00Z', '2026-01-15T10:00:00+16:00', '9999-12-31T23:00:00-05:00', '2026-02-30T10:00:00Z', '2026-12-07T24:00:00Z']) {
      const refused = await manager.post('/v1/visits', { point_of_sale_id: pos, agent_token_id: agentId, scheduled_for: bad }, k());
      assertProblem(refused, 400, 'validation_failed');
      assert.ok(refused.body.errors.some((e: { path: string }) => e.path === '/body/scheduled_for'), `${bad}: ${JSON.stringify(refused.body)}`);
    }
    assert.equal(await count('SELECT count(*) FROM visits WHERE tenant_id = $1', [tenantId]), visitsBefore);
    assert.equal(await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]), opsBefore);
  });

  it('a visit scheduled at midnight in any offset is kept to the moment; completed with a device time of the same local midnight written in another offset, that instant counts', async () => {
    const v = await owner.post('/v1/visits', { point_of_sale_id: pos2, agent_token_id: agentId, scheduled_for: '2026-12-07T00:00:00+14:00' }, k());
    assert.equal(v.status, 201, JSON.stringify(v.body));
    assert.equal(v.body.scheduled_for, '2026-12-06T10:00:00.000Z');
    const done = await agent.post(`/v1/visits/${v.body.id}/complete`, { ...OTHER_SHOP, lines: [], client_created_at: '2026-12-06T23:59:59.999999-10:00' }, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    const stored = (await t.admin.query(`SELECT to_char(client_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at FROM visits WHERE id = $1`, [v.body.id])).rows[0].at;
    assert.equal(stored, '2026-12-07T09:59:59.999999');
  });

  it('times at the edges of the years 0001–9999 are answered as they were read: scheduled_for and client_created_at in year 1 and at the end of 9999', async () => {
    const early = await owner.post('/v1/visits', { point_of_sale_id: pos2, agent_token_id: agentId, scheduled_for: '0001-06-01T00:00:00Z' }, k());
    assert.equal(early.status, 201, JSON.stringify(early.body));
    assert.equal(early.body.scheduled_for, '0001-06-01T00:00:00.000Z');
    const late = await owner.post('/v1/visits', { point_of_sale_id: pos2, agent_token_id: agentId, scheduled_for: '9999-12-31T23:59:59.999Z' }, k());
    assert.equal(late.status, 201, JSON.stringify(late.body));
    assert.equal(late.body.scheduled_for, '9999-12-31T23:59:59.999Z');
    const done = await agent.post(`/v1/visits/${early.body.id}/complete`, { ...OTHER_SHOP, lines: [], client_created_at: '0001-06-01T12:00:00Z' }, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.visit.client_created_at, '0001-06-01T12:00:00.000Z');
    assert.equal((await agent.get(`/v1/visits/${early.body.id}`)).body.visit.client_created_at, '0001-06-01T12:00:00.000Z');
    const listed = (await agent.get(`/v1/visits?point_of_sale_id=${pos2}&limit=1`)).body;
    assert.equal(listed.items[0].scheduled_for, '0001-06-01T00:00:00.000Z');
    const next = (await agent.get(`/v1/visits?point_of_sale_id=${pos2}&limit=200&cursor=${encodeURIComponent(listed.next_cursor)}`)).body;
    assert.ok(!next.items.some((v: { id: string }) => v.id === early.body.id), 'the first page is not listed again');
    assert.equal(next.items.at(-1).scheduled_for, '9999-12-31T23:59:59.999Z');
  });

  it('RFC 3339 lets the T and the Z be lower case: scheduled_for and client_created_at are read as the same moments', async () => {
    const v = await owner.post('/v1/visits', { point_of_sale_id: pos2, agent_token_id: agentId, scheduled_for: '2026-12-07t10:00:00.5z' }, k());
    assert.equal(v.status, 201, JSON.stringify(v.body));
    assert.equal(v.body.scheduled_for, '2026-12-07T10:00:00.500Z');
    const done = await agent.post(`/v1/visits/${v.body.id}/complete`, { ...OTHER_SHOP, lines: [], client_created_at: '2026-12-06t23:30:00+01:00' }, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.visit.client_created_at, '2026-12-06T22:30:00.000Z');
  });

  it("integrity: a point of sale whose last visit is not its latest completed visit by when it happened is reported by point_of_sale_last_visit only", async () => {
    const lv = (await manager.post('/v1/points-of-sale', { name: 'Last visit', store_id: storeId, ...SHOP })).body.id as string;
    const check = ['point_of_sale_last_visit'];
    const subject = `point_of_sale:${lv}`;
    const mine = async () => (await integrityFindings(t.admin, tenantId)).filter((f) => f.subject === subject);
    assert.deepEqual(await mine(), [], 'no visit yet: nothing to report');
    const [v1, v2, late] = [await schedule(lv), await schedule(lv), await schedule(lv)];
    for (const v of [v1, v2]) assert.equal((await agent.post(`/v1/visits/${v}/complete`, { ...SHOP, lines: [] }, k())).status, 200);
    // A visit synced late, made before v2 by its device time (and after its own scheduling): v2 stays the last visit.
    const lateAt = (await t.admin.query(`SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM visits WHERE id = $1`, [late])).rows[0].at;
    assert.equal((await agent.post(`/v1/visits/${late}/complete`, { ...SHOP, lines: [], client_created_at: lateAt }, k())).status, 200);
    // last_visit_at as text: to the microsecond (a Date would restore it to the millisecond)
    const row = async () => (await t.admin.query('SELECT last_visit_id, last_visit_at::text AS last_visit_at FROM points_of_sale WHERE id = $1', [lv])).rows[0];
    const kept = await row();
    assert.equal(kept.last_visit_id, v2);
    assert.deepEqual(await mine(), [], 'as the completions left it: clean');
    const corrupt = async (set: string, params: unknown[] = []) => {
      await t.admin.query(`UPDATE points_of_sale SET ${set} WHERE id = $1`, [lv, ...params]);
      const found = await mine();
      await t.admin.query('UPDATE points_of_sale SET last_visit_id = $2, last_visit_at = $3::timestamptz WHERE id = $1', [lv, kept.last_visit_id, kept.last_visit_at]);
      return found.map((f) => f.check);
    };
    // an earlier visit shown as the last (the arrival order, or an earlier-started visit that committed last)
    assert.deepEqual(await corrupt(`last_visit_id = $2, last_visit_at = (SELECT completed_at FROM visits WHERE id = $2)`, [v1]), check);
    assert.deepEqual(await corrupt(`last_visit_id = $2`, [late]), check);
    // the right visit at another time, none at all, or a visit of another point of sale
    assert.deepEqual(await corrupt(`last_visit_at = last_visit_at - interval '1 microsecond'`), check);
    assert.deepEqual(await corrupt(`last_visit_id = NULL, last_visit_at = NULL`), check);
    const elsewhere = await schedule(pos2);
    assert.equal((await agent.post(`/v1/visits/${elsewhere}/complete`, { ...OTHER_SHOP, lines: [] }, k())).status, 200);
    assert.deepEqual(await corrupt(`last_visit_id = $2, last_visit_at = (SELECT completed_at FROM visits WHERE id = $2)`, [elsewhere]), check);
    assert.deepEqual(await mine(), []);
    await assertBooksConsistent();
  });

  it("a field agent cannot complete a visit to a point of sale outside its stores, nor another agent's, nor settle another point of sale's consignment: refused, nothing written", async () => {
    const farVisitByOwner = await owner.post('/v1/visits', { point_of_sale_id: farPos, agent_token_id: agentId, scheduled_for: new Date().toISOString() }, k());
    assertProblem(farVisitByOwner, 400, 'validation_failed');
    const others = await schedule(pos, otherAgentId);
    const opsBefore = await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]);
    assertProblem(await agent.post(`/v1/visits/${others}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 1 }] }, k()), 404, 'not_found');
    assert.equal(await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]), opsBefore);
    // A consignment of another point of sale of the same store, settled on a visit here.
    const elsewhere = await schedule(pos2);
    const leftThere = await agent.post(`/v1/visits/${elsewhere}/complete`, { ...OTHER_SHOP, lines: [{ sku_id: tea, quantity: 4 }] }, k());
    assert.equal(leftThere.status, 200, JSON.stringify(leftThere.body));
    const here = await schedule(pos);
    const opsBeforeSettling = await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]);
    const refused = await agent.post(
      `/v1/visits/${here}/complete`,
      { ...SHOP, lines: [{ sku_id: soap, quantity: 1 }], settlement: { consignment_id: leftThere.body.consignment.id, lines: [{ sku_id: tea, sold_quantity: 4, returned_quantity: 0 }] } },
      k(),
    );
    assertProblem(refused, 400, 'validation_failed');
    assert.equal(await count('SELECT count(*) FROM operations WHERE tenant_id = $1', [tenantId]), opsBeforeSettling);
    assert.equal((await t.admin.query('SELECT status FROM visits WHERE id = $1', [here])).rows[0].status, 'scheduled');
    await assertBooksConsistent();
  });
});
