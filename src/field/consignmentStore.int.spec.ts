import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';

const SHOP = { latitude: 52.520008, longitude: 13.404954 };

/**
 * A consignment's store (`consignments.store_id`) is its point of sale's
 * store: completeVisit takes the goods out of that store's stock and writes
 * it so, and everything after relies on it — returned goods go back to the
 * consignment's store, the settlement is booked for it and credits its sales
 * revenue. Each case corrupts the data consistently (the stock ledger and
 * balances agree with the consignment), as a bug or a hand edit would leave
 * it: only `consignment_store_matches_point_of_sale` can see it.
 */
describe("integrity: a consignment's store is its point of sale's store", () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let agentId: string;
  let depot: string;
  let annex: string;
  let pos: string;
  let soap: string;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });

  /** Each case in a tenant of its own: two stores holding soap, a point of sale supplied from the depot. */
  const setup = async () => {
    ({ owner, tenantId } = await t.newTenant());
    depot = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body.id;
    annex = (await owner.post('/v1/stores', { code: 'ANNEX', name: 'Annex' })).body.id;
    agentId = (await owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [depot] })).body.id;
    pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: depot, ...SHOP })).body.id;
    const created = await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'Soap', unit: 'piece', price: 120 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    soap = created.body.id;
    for (const store of [depot, annex]) {
      assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: soap, quantity: 100 }] }, k())).status, 201);
    }
  };

  const complete = async (body: object) => {
    const visit = await owner.post('/v1/visits', { point_of_sale_id: pos, agent_token_id: agentId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    const done = await owner.post(`/v1/visits/${visit.body.id}/complete`, { ...SHOP, lines: [], ...body }, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    return done.body;
  };

  const named = (findings: Array<{ check: string; subject: string }>) => findings.map(({ check, subject }) => `${check} ${subject}`).sort();

  it("a consignment whose goods left another store than its point of sale's (ledger and balances agreeing with it) is reported, by that check only", async () => {
    await setup();
    const left = await complete({ lines: [{ sku_id: soap, quantity: 4 }] });
    const consignment = left.consignment as { id: string };
    const opId = (await t.admin.query<{ op_id: string }>('SELECT op_id FROM consignments WHERE tenant_id = $1 AND id = $2', [tenantId, consignment.id])).rows[0]!.op_id;
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    // As if completeVisit had taken the goods from the annex: the consignment, its consignment_out row
    // (now the last of the annex's soap rows, its running total the annex's) and both balances say so.
    await withTriggersOff(t.admin, [
      ['UPDATE consignments SET store_id = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, consignment.id, annex]],
      [
        `UPDATE stock_ledger SET store_id = $3, quantity_after = 96 WHERE tenant_id = $1 AND op_id = $2 AND kind = 'consignment_out'`,
        [tenantId, opId, annex],
      ],
      ['UPDATE stock_balances SET quantity = 100 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, depot, soap]],
      ['UPDATE stock_balances SET quantity = 96 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, annex, soap]],
    ]);
    const findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(named(findings), [`consignment_store_matches_point_of_sale consignment:${consignment.id}`], JSON.stringify(findings));
    assert.deepEqual(findings[0]!.detail, { store_id: annex, point_of_sale_id: pos, point_of_sale_store_id: depot });
    // GET /v1/integrity runs it as the app role, under row-level security: the same finding, a critical one.
    const run = await owner.get('/v1/integrity');
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.deepEqual(
      run.body.findings.map(({ check, severity, subject }: { check: string; severity: string; subject: string }) => `${check} ${severity} ${subject}`),
      [`consignment_store_matches_point_of_sale critical consignment:${consignment.id}`],
    );
  });

  it("a point of sale moved to another store by hand (its consignments, open and settled, left from the first) is reported once per consignment, by that check only", async () => {
    await setup();
    const left = await complete({ lines: [{ sku_id: soap, quantity: 4 }] });
    const settled = await complete({
      lines: [{ sku_id: soap, quantity: 2 }],
      settlement: { consignment_id: left.consignment.id, lines: [{ sku_id: soap, sold_quantity: 1, returned_quantity: 3 }] },
    });
    const [first, second] = [left.consignment.id as string, settled.consignment.id as string];
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    await withTriggersOff(t.admin, [['UPDATE points_of_sale SET store_id = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, pos, annex]]]);
    const findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      named(findings),
      [`consignment_store_matches_point_of_sale consignment:${first}`, `consignment_store_matches_point_of_sale consignment:${second}`].sort(),
      JSON.stringify(findings),
    );
    for (const finding of findings) assert.deepEqual(finding.detail, { store_id: depot, point_of_sale_id: pos, point_of_sale_store_id: annex });
    // Put back, nothing is reported.
    await withTriggersOff(t.admin, [['UPDATE points_of_sale SET store_id = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, pos, depot]]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
