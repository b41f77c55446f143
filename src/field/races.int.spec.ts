import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenFieldDepot } from './testkit.js';

const SHOP = { latitude: 52.520008, longitude: 13.404954 };

/**
 * Visit completions racing each other, sent as real concurrent requests;
 * each test then checks the rows left behind (visits, consignments,
 * settlements, stock ledger, journal) and the integrity checks.
 */
describe('field sales under races: completions of one visit, settlements of one consignment', () => {
  let t: TestApp;
  let tenantId: string;
  let manager: ApiClient;
  let agent: ApiClient;
  let agentId: string;
  let storeId: string;
  let soap: string;
  let tea: string;
  let pos: string;

  before(async () => {
    t = await startTestApp();
    const depot = await givenFieldDepot(t, { stock: 1000 });
    ({ tenantId, storeId, manager } = depot);
    ({ soap, tea } = depot.goods!);
    ({ client: agent, id: agentId } = depot.agent);
    pos = (await manager.post('/v1/points-of-sale', { name: 'Kiosk', store_id: storeId, ...SHOP })).body.id;
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const schedule = async () => {
    const response = await manager.post('/v1/visits', { point_of_sale_id: pos, agent_token_id: agentId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.id as string;
  };
  const stockOf = async (skuId: string) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, skuId])).rows[0].quantity);
  const count = async (sqlText: string, params: unknown[]) => Number((await t.admin.query(sqlText, params)).rows[0].count);

  it('two completions of one visit with different goods at once: one is recorded, the other is 409 and nothing of it is written', async () => {
    for (let round = 0; round < 4; round++) {
      const visit = await schedule();
      const [soapBefore, teaBefore] = [await stockOf(soap), await stockOf(tea)];
      const [a, b] = await Promise.all([
        agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 3 }] }, k()),
        manager.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [{ sku_id: tea, quantity: 5 }] }, k()),
      ]);
      assert.deepEqual([a.status, b.status].sort(), [200, 409], JSON.stringify([a.body, b.body]));
      const won = a.status === 200 ? a : b;
      const lost = a.status === 200 ? b : a;
      assert.equal(won.headers.get('idempotent-replayed'), null);
      assert.equal(lost.body.code, 'invalid_transition');
      const soapTaken = won === a ? 3 : 0;
      const teaTaken = won === b ? 5 : 0;
      assert.equal(await stockOf(soap), soapBefore - soapTaken);
      assert.equal(await stockOf(tea), teaBefore - teaTaken);
      assert.equal(await count('SELECT count(*) FROM consignments WHERE tenant_id = $1 AND visit_id = $2', [tenantId, visit]), 1);
      assert.deepEqual(
        (await t.admin.query('SELECT l.sku_id, l.quantity::int FROM consignment_lines l JOIN consignments c ON c.id = l.consignment_id WHERE c.visit_id = $1', [visit])).rows,
        [won === a ? { sku_id: soap, quantity: 3 } : { sku_id: tea, quantity: 5 }],
      );
      assert.equal(await count(`SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'visit.complete' AND store_id = $2 AND id IN (SELECT completed_by_op FROM visits WHERE id = $3)`, [tenantId, storeId, visit]), 1);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two visits settling the same consignment at once: one settles it (goods back once, money owed once), the other is 409 and writes nothing', async () => {
    for (let round = 0; round < 3; round++) {
      const first = await schedule();
      const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
      assert.equal(left.status, 200, JSON.stringify(left.body));
      const consignmentId = left.body.consignment.id as string;
      const [v1, v2] = [await schedule(), await schedule()];
      const soapBefore = await stockOf(soap);
      const settlement = (sold: number) => ({ consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: sold, returned_quantity: 10 - sold }] });
      const [a, b] = await Promise.all([
        agent.post(`/v1/visits/${v1}/complete`, { ...SHOP, lines: [], settlement: settlement(4) }, k()),
        manager.post(`/v1/visits/${v2}/complete`, { ...SHOP, lines: [], settlement: settlement(7) }, k()),
      ]);
      assert.deepEqual([a.status, b.status].sort(), [200, 409], JSON.stringify([a.body, b.body]));
      const won = a.status === 200 ? a : b;
      const sold = won === a ? 4 : 7;
      assert.equal(won.body.settlement.amount_owed, sold * 120);
      assert.equal(await stockOf(soap), soapBefore + (10 - sold));
      assert.equal(await count('SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1 AND consignment_id = $2', [tenantId, consignmentId]), 1);
      assert.equal(await count(`SELECT count(*) FROM visits WHERE id = ANY($1::uuid[]) AND status = 'completed'`, [[v1, v2]]), 1);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
