import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { assertFieldBooksConsistent, fieldRowCounts, givenFieldDepot } from './testkit.js';

const SHOP = { latitude: 41.902782, longitude: 12.496366 };

/**
 * A settlement synced late. Agent A settles consignment C on the phone
 * offline; meanwhile another visit settles C online. When A's phone syncs
 * (the completion carries client_created_at), the goods A left and the visit
 * itself really happened: they are recorded; A's settlement is not (C was
 * settled once, by the other operation), and a `consignment_settled_twice`
 * review item holds what a person needs to decide. The answer is 200 with
 * `settlement: null` and `settlement_conflict` saying why. An online
 * completion (no client_created_at) is still 409: the agent is there.
 */
describe('field sales: a settlement synced late after the consignment was settled online', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let manager: ApiClient;
  let agent: ApiClient;
  let otherAgent: ApiClient;
  let agentId: string;
  let otherAgentId: string;
  let storeId: string;
  let soap: string;
  let tea: string;

  before(async () => {
    t = await startTestApp();
    const depot = await givenFieldDepot(t, { stock: 5000 });
    ({ owner, tenantId, storeId, manager } = depot);
    ({ soap, tea } = depot.goods!);
    ({ client: agent, id: agentId } = depot.agent);
    ({ client: otherAgent, id: otherAgentId } = depot.otherAgent);
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const newPointOfSale = async () => {
    const created = await manager.post('/v1/points-of-sale', { name: `Kiosk ${randomUUID().slice(0, 6)}`, store_id: storeId, ...SHOP }, k());
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body as { id: string; party_id: string };
  };
  const schedule = async (pointOfSale: string, agentTokenId = agentId) => {
    const response = await manager.post('/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agentTokenId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.id as string;
  };
  /** A point of sale with an open consignment of 10 soap left on a completed visit. */
  const openConsignment = async () => {
    const pos = await newPointOfSale();
    const visit = await schedule(pos.id);
    const left = await agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
    assert.equal(left.status, 200, JSON.stringify(left.body));
    return { pos, consignmentId: left.body.consignment.id as string };
  };
  const settlementOf = (consignmentId: string, sold: number) => ({ consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: sold, returned_quantity: 10 - sold }] });
  const stockOf = async (skuId: string) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, skuId])).rows[0].quantity);
  const count = async (sqlText: string, params: unknown[]) => Number((await t.admin.query(sqlText, params)).rows[0].count);
  const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();

  const written = () => fieldRowCounts(t, tenantId);

  const assertBooksConsistent = () => assertFieldBooksConsistent(t, tenantId);

  const assertProblem = (response: ApiResponse, status: number, code: string) => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.equal(response.headers.get('content-type')?.startsWith('application/problem+json'), true);
    assert.equal(response.body.code, code, JSON.stringify(response.body));
  };

  it('an offline completion settling a consignment settled online meanwhile: 200, its goods and visit recorded, its settlement not (a review item instead), replays identical, books clean', async () => {
    const { pos, consignmentId } = await openConsignment();
    const offlineVisit = await schedule(pos.id);
    const onlineVisit = await schedule(pos.id, otherAgentId);
    const deviceTime = hoursAgo(0.01);

    // Online: the other agent settles C (4 sold, 6 back).
    const online = await otherAgent.post(`/v1/visits/${onlineVisit}/complete`, { ...SHOP, lines: [], settlement: settlementOf(consignmentId, 4) }, k());
    assert.equal(online.status, 200, JSON.stringify(online.body));
    const onlineSettlement = online.body.settlement as { id: string; op_id: string; journal_entry_id: string };

    // The offline completion syncs: it settled C on the phone (7 sold, 3 back) and left 2 tea.
    const [soapBefore, teaBefore] = [await stockOf(soap), await stockOf(tea)];
    const entriesBefore = await count('SELECT count(*) FROM journal_entries WHERE tenant_id = $1', [tenantId]);
    const body = { ...SHOP, lines: [{ sku_id: tea, quantity: 2, unit_price: 310 }], settlement: settlementOf(consignmentId, 7), client_created_at: deviceTime };
    const key = k();
    const late = await agent.post(`/v1/visits/${offlineVisit}/complete`, body, key);
    assert.equal(late.status, 200, JSON.stringify(late.body));
    assert.equal(late.headers.get('idempotent-replayed'), null);
    assert.equal(late.body.visit.status, 'completed');
    assert.equal(late.body.settlement, null);
    assert.equal(late.body.consignment.status, 'open');
    assert.deepEqual(late.body.consignment.lines, [{ sku_id: tea, quantity: 2, unit_price: 310, shortfall_quantity: 0 }]);
    const conflict = late.body.settlement_conflict;
    assert.ok(conflict, JSON.stringify(late.body));
    assert.equal(conflict.consignment_id, consignmentId);
    assert.equal(conflict.settled_by_op, onlineSettlement.op_id);
    assert.equal(conflict.settlement_id, onlineSettlement.id);
    assert.equal(typeof conflict.review_item_id, 'string');

    // Stock moved only for the goods left: tea out, no soap back.
    assert.equal(await stockOf(tea), teaBefore - 2);
    assert.equal(await stockOf(soap), soapBefore);
    const lateOp = late.body.visit.completed_by_op as string;
    assert.deepEqual(
      (await t.admin.query(`SELECT kind, sku_id, quantity_change::int FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY id`, [tenantId, lateOp])).rows,
      [{ kind: 'consignment_out', sku_id: tea, quantity_change: -2 }],
    );
    // C settled once, by the online operation; one journal entry for it, none new.
    assert.deepEqual(
      (await t.admin.query(`SELECT status, settled_by_op FROM consignments WHERE tenant_id = $1 AND id = $2`, [tenantId, consignmentId])).rows,
      [{ status: 'settled', settled_by_op: onlineSettlement.op_id }],
    );
    assert.equal(await count('SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1 AND consignment_id = $2', [tenantId, consignmentId]), 1);
    assert.equal(await count('SELECT count(*) FROM journal_entries WHERE tenant_id = $1', [tenantId]), entriesBefore);
    assert.equal(await count('SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1 AND visit_id = $2', [tenantId, offlineVisit]), 0);
    // The point of sale owes what the online settlement said, nothing more.
    const owed = await manager.get(`/v1/points-of-sale/${pos.id}`);
    assert.equal(owed.status, 200);

    // The review item holds what a person needs to decide.
    const item = await owner.get(`/v1/review-items/${conflict.review_item_id}`);
    assert.equal(item.status, 200, JSON.stringify(item.body));
    assert.equal(item.body.kind, 'consignment_settled_twice');
    assert.equal(item.body.status, 'open');
    assert.equal(item.body.store_id, storeId);
    assert.equal(item.body.subject_type, 'consignment');
    assert.equal(item.body.subject_id, consignmentId);
    assert.equal(item.body.op_id, lateOp);
    const { client_created_at: reportedAt, ...detail } = item.body.detail;
    assert.equal(new Date(reportedAt).toISOString(), late.body.visit.client_created_at);
    assert.equal(reportedAt, `${deviceTime.slice(0, -1)}000Z`, 'the device time as read, to the microsecond');
    assert.deepEqual(detail, {
      visit_id: offlineVisit,
      point_of_sale_id: pos.id,
      consignment_id: consignmentId,
      settled_by_op: onlineSettlement.op_id,
      settlement_id: onlineSettlement.id,
      settled_by_visit_id: onlineVisit,
      settled_amount_owed: 4 * 120,
      reported: { lines: [{ sku_id: soap, sold_quantity: 7, returned_quantity: 3, unit_price: 120 }], amount_owed: 7 * 120 },
    });
    const listed = await owner.get('/v1/review-items?kind=consignment_settled_twice');
    assert.deepEqual(
      listed.body.items.map((row: { id: string }) => row.id),
      [conflict.review_item_id],
    );

    // The visit and the point of sale as recorded.
    const shown = await agent.get(`/v1/visits/${offlineVisit}`);
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body.settlement_conflict, conflict);
    assert.equal(shown.body.settlement, null);
    assert.equal((await manager.get(`/v1/points-of-sale/${pos.id}`)).body.last_visit_id, onlineVisit, 'the offline visit happened before the online one arrived');

    // Replays: the same key, another key, no key — the same answer, nothing written.
    const before = await written();
    const sameKey = await agent.post(`/v1/visits/${offlineVisit}/complete`, body, key);
    const otherKey = await agent.post(`/v1/visits/${offlineVisit}/complete`, { ...body, client_created_at: hoursAgo(2), lines: [...body.lines] }, k());
    const noKey = await agent.post(`/v1/visits/${offlineVisit}/complete`, body);
    for (const again of [sameKey, otherKey, noKey]) {
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, late.body);
    }
    // Another settlement for the same visit is another request: 409, nothing written.
    assertProblem(await agent.post(`/v1/visits/${offlineVisit}/complete`, { ...body, settlement: settlementOf(consignmentId, 2) }, k()), 409, 'invalid_transition');
    // Only the other key is kept, with the replayed answer (as for any completion repeated under a new key).
    assert.deepEqual(await written(), { ...before, keys: before.keys + 1 });

    // The operation lists what it wrote.
    const operation = await owner.get(`/v1/operations/${lateOp}`);
    assert.equal(operation.status, 200);
    const effects = (operation.body.effects as Array<{ table: string; id: string }>).map((effect) => effect.table);
    assert.ok(effects.includes('review_items') && effects.includes('consignments') && !effects.includes('consignment_settlements'), JSON.stringify(effects));

    await assertBooksConsistent();
  });

  it('integrity: a kept conflict that names another settlement, or a review item not about it, is reported by consignment_settlement_conflict_recorded only', async () => {
    // A tenant of its own: its corruption is the only one its checks see.
    const own = await t.newTenant();
    const store = (await own.owner.post('/v1/stores', { code: 'OWN', name: 'Own' })).body.id as string;
    const item = (await own.owner.post('/v1/skus', { code: 'ITEM', name: 'Item', unit: 'piece', price: 50 })).body.id as string;
    assert.equal((await own.owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: item, quantity: 100 }] })).status, 201);
    const agentToken = (await own.owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [store] })).body.id as string;
    const pos = (await own.owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, ...SHOP })).body.id as string;
    const complete = async (body: object) => {
      const visit = await own.owner.post('/v1/visits', { point_of_sale_id: pos, agent_token_id: agentToken, scheduled_for: new Date().toISOString() }, k());
      const done = await own.owner.post(`/v1/visits/${visit.body.id}/complete`, { ...SHOP, lines: [], ...body }, k());
      assert.equal(done.status, 200, JSON.stringify(done.body));
      return done.body;
    };
    const settle = (consignmentId: string) => ({ consignment_id: consignmentId, lines: [{ sku_id: item, sold_quantity: 1, returned_quantity: 1 }] });
    const [c1, c2] = [(await complete({ lines: [{ sku_id: item, quantity: 2 }] })).consignment.id, (await complete({ lines: [{ sku_id: item, quantity: 2 }] })).consignment.id];
    const otherSettlement = (await complete({ settlement: settle(c2) })).settlement.id;
    await complete({ settlement: settle(c1) });
    const late = await complete({ settlement: settle(c1), client_created_at: hoursAgo(1) });
    const conflictId = (await t.admin.query(`SELECT id FROM consignment_settlement_conflicts WHERE tenant_id = $1 AND visit_id = $2`, [own.tenantId, late.visit.id])).rows[0].id;
    assert.deepEqual(await integrityFindings(t.admin, own.tenantId), []);

    const anotherItem = (
      await t.admin.query(`INSERT INTO review_items (tenant_id, id, kind, detail, op_id) VALUES ($1, $2, 'job_failed', '{}', $3) RETURNING id`, [own.tenantId, randomUUID(), late.visit.completed_by_op])
    ).rows[0].id;
    await withTriggersOff(t.admin, [[`UPDATE consignment_settlement_conflicts SET settlement_id = $2 WHERE id = $1`, [conflictId, otherSettlement]]]);
    const named = await integrityFindings(t.admin, own.tenantId);
    assert.deepEqual(named.map((finding) => [finding.check, finding.subject]), [['consignment_settlement_conflict_recorded', `consignment_settlement_conflict:${conflictId}`]]);
    await withTriggersOff(t.admin, [[`UPDATE consignment_settlement_conflicts SET settlement_id = $2, review_item_id = $3 WHERE id = $1`, [conflictId, late.settlement_conflict.settlement_id, anotherItem]]]);
    const reviewed = await integrityFindings(t.admin, own.tenantId);
    assert.deepEqual(reviewed.map((finding) => [finding.check, finding.subject]), [['consignment_settlement_conflict_recorded', `consignment_settlement_conflict:${conflictId}`]]);
    assert.equal((reviewed[0]!.detail as { review_item_kind: string }).review_item_kind, 'job_failed');
    await withTriggersOff(t.admin, [[`UPDATE consignment_settlement_conflicts SET review_item_id = $2 WHERE id = $1`, [conflictId, late.settlement_conflict.review_item_id]]]);
    assert.deepEqual(await integrityFindings(t.admin, own.tenantId), []);
  });

  it('an online completion settling a consignment already settled is still 409 invalid_transition, nothing written', async () => {
    const { pos, consignmentId } = await openConsignment();
    const [first, second] = [await schedule(pos.id), await schedule(pos.id, otherAgentId)];
    assert.equal((await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [], settlement: settlementOf(consignmentId, 5) }, k())).status, 200);
    const before = await written();
    const refused = await otherAgent.post(`/v1/visits/${second}/complete`, { ...SHOP, lines: [{ sku_id: tea, quantity: 1 }], settlement: settlementOf(consignmentId, 5) }, k());
    assertProblem(refused, 409, 'invalid_transition');
    assert.equal(refused.body.consignment_id, consignmentId);
    assert.deepEqual(await written(), before);
    assert.equal((await otherAgent.get(`/v1/visits/${second}`)).body.visit.status, 'scheduled');
    await assertBooksConsistent();
  });

  it('an offline completion whose settlement lines do not fit the settled consignment is 400, nothing written', async () => {
    const { pos, consignmentId } = await openConsignment();
    const [first, late] = [await schedule(pos.id, otherAgentId), await schedule(pos.id)];
    assert.equal((await otherAgent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [], settlement: settlementOf(consignmentId, 5) }, k())).status, 200);
    const before = await written();
    const bad = [
      { consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: 5, returned_quantity: 6 }] },
      { consignment_id: consignmentId, lines: [{ sku_id: tea, sold_quantity: 10, returned_quantity: 0 }] },
      { consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: 5, returned_quantity: 5 }, { sku_id: soap, sold_quantity: 5, returned_quantity: 5 }] },
    ];
    for (const settlement of bad) {
      const refused = await agent.post(`/v1/visits/${late}/complete`, { ...SHOP, lines: [{ sku_id: tea, quantity: 1 }], settlement, client_created_at: hoursAgo(1) }, k());
      assertProblem(refused, 400, 'validation_failed');
      assert.ok(refused.body.errors.every((error: { path: string }) => error.path.startsWith('/body/settlement')), JSON.stringify(refused.body));
    }
    // A consignment of another point of sale stays a bad request too.
    const elsewhere = await openConsignment();
    const foreign = await agent.post(`/v1/visits/${late}/complete`, { ...SHOP, lines: [], settlement: settlementOf(elsewhere.consignmentId, 1), client_created_at: hoursAgo(1) }, k());
    assertProblem(foreign, 400, 'validation_failed');
    const afterRefusals = await written();
    // (The other point of sale's setup wrote its own rows; none of the refusals did.)
    assert.equal(afterRefusals.review_items, before.review_items);
    assert.equal(afterRefusals.settlements, before.settlements);
    assert.equal(afterRefusals.completed_visits, before.completed_visits + 1);
    assert.equal((await agent.get(`/v1/visits/${late}`)).body.visit.status, 'scheduled');
    await assertBooksConsistent();
  });

  it('the online settlement and the offline completion settling the same consignment sent at once: settled once, one journal entry, the other answer carries the conflict or is 409, stock = ledger', async (context) => {
    let conflicts = 0;
    let refusals = 0;
    for (let round = 0; round < 10; round++) {
      const { pos, consignmentId } = await openConsignment();
      const [offlineVisit, onlineVisit] = [await schedule(pos.id), await schedule(pos.id, otherAgentId)];
      const [soapBefore, teaBefore] = [await stockOf(soap), await stockOf(tea)];
      const reviewBefore = await count(`SELECT count(*) FROM review_items WHERE tenant_id = $1 AND kind = 'consignment_settled_twice'`, [tenantId]);
      const [offline, online] = await Promise.all([
        agent.post(`/v1/visits/${offlineVisit}/complete`, { ...SHOP, lines: [{ sku_id: tea, quantity: 2 }], settlement: settlementOf(consignmentId, 6), client_created_at: hoursAgo(3) }, k()),
        otherAgent.post(`/v1/visits/${onlineVisit}/complete`, { ...SHOP, lines: [], settlement: settlementOf(consignmentId, 3) }, k()),
      ]);
      // The offline completion is always recorded (its goods left the store).
      assert.equal(offline.status, 200, JSON.stringify([offline.body, online.body]));
      assert.deepEqual(offline.body.consignment.lines, [{ sku_id: tea, quantity: 2, unit_price: 300, shortfall_quantity: 0 }]);
      let sold: number;
      if (online.status === 200) {
        // The online one settled first: the offline answer carries the conflict.
        conflicts++;
        assert.equal(offline.body.settlement, null);
        assert.equal(offline.body.settlement_conflict?.settled_by_op, online.body.settlement.op_id, JSON.stringify(offline.body));
        assert.equal(online.body.settlement_conflict, undefined);
        sold = 3;
      } else {
        // The offline one settled first: the online one is refused, nothing of it written.
        refusals++;
        assertProblem(online, 409, 'invalid_transition');
        assert.equal(offline.body.settlement_conflict, undefined);
        assert.equal(offline.body.settlement.amount_owed, 6 * 120);
        assert.equal((await otherAgent.get(`/v1/visits/${onlineVisit}`)).body.visit.status, 'scheduled');
        sold = 6;
      }
      assert.equal(await count('SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1 AND consignment_id = $2', [tenantId, consignmentId]), 1);
      assert.equal(
        await count(`SELECT count(*) FROM journal_entries WHERE tenant_id = $1 AND kind = 'consignment_settlement' AND memo = $2`, [tenantId, `consignment ${consignmentId}`]),
        1,
      );
      assert.equal(await count(`SELECT count(*) FROM stock_ledger WHERE tenant_id = $1 AND kind = 'consignment_return' AND reason = $2`, [tenantId, `consignment ${consignmentId}`]), 1);
      assert.equal(await stockOf(soap), soapBefore + (10 - sold));
      assert.equal(await stockOf(tea), teaBefore - 2);
      assert.equal(
        await count(`SELECT count(*) FROM review_items WHERE tenant_id = $1 AND kind = 'consignment_settled_twice'`, [tenantId]),
        reviewBefore + (online.status === 200 ? 1 : 0),
      );
      assert.equal(
        await count(`SELECT count(*) FROM review_items WHERE tenant_id = $1 AND kind = 'consignment_settled_twice' AND subject_id = $2`, [tenantId, consignmentId]),
        online.status === 200 ? 1 : 0,
      );
    }
    assert.equal(conflicts + refusals, 10);
    context.diagnostic(`online first (offline answer carries the conflict): ${conflicts}; offline first (online 409): ${refusals}`);
    await assertBooksConsistent();
  });
});
