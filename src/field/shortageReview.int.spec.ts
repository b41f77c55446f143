import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';

const SHOP = { latitude: 59.329323, longitude: 18.068581 };
const CHECK = 'consignment_shortfall_matches_review_item';

/**
 * Goods left on a visit queued offline when the store was short record the
 * missing part as `consignment_lines.shortfall_quantity` and open an
 * `offline_consignment_shortage` review item: the only way a person learns
 * that the store's stock figure is missing goods. Each case corrupts the
 * item (or adds one) as a superuser and sees `CHECK` — and only it — report
 * it; a resolved item is held to the same figures.
 */
describe('integrity: a consignment left short has its offline_consignment_shortage review item, with the same figures', () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();

  interface Field {
    tenantId: string;
    owner: ApiClient;
    manager: ApiClient;
    store: string;
    annex: string;
    pos: string;
    agentId: string;
    soap: string;
    tea: string;
  }

  /** A tenant of its own: 3 soap and 10 tea in the store, a point of sale supplied from it. */
  const setup = async (): Promise<Field> => {
    const { owner, tenantId } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body.id as string;
    const annex = (await owner.post('/v1/stores', { code: 'ANNEX', name: 'Annex' })).body.id as string;
    const agentId = (await owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [store] })).body.id as string;
    const manager = t.client((await owner.post('/v1/tokens', { name: 'manager', role: 'manager', store_ids: [store] })).body.token);
    const pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, ...SHOP })).body.id as string;
    const skus: string[] = [];
    for (const [name, stock] of [['Soap', 3], ['Tea', 10]] as const) {
      const created = await owner.post('/v1/skus', { code: `${name}-${randomUUID().slice(0, 8)}`, name, unit: 'piece', price: 100 });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: created.body.id, quantity: stock }] }, k())).status, 201);
      skus.push(created.body.id);
    }
    return { tenantId, owner, manager, store, annex, pos, agentId, soap: skus[0]!, tea: skus[1]! };
  };

  const complete = async (f: Field, body: object) => {
    const visit = await f.owner.post('/v1/visits', { point_of_sale_id: f.pos, agent_token_id: f.agentId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    const done = await f.owner.post(`/v1/visits/${visit.body.id}/complete`, { ...SHOP, lines: [], ...body }, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    return done.body;
  };

  /** Queued offline: 5 soap (2 short) and 4 tea (none short). */
  const leftShort = async (f: Field) => {
    const done = await complete(f, { lines: [{ sku_id: f.soap, quantity: 5 }, { sku_id: f.tea, quantity: 4 }], client_created_at: hoursAgo(1) });
    const consignmentId = done.consignment.id as string;
    const item = (await t.admin.query<{ id: string }>(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'offline_consignment_shortage' AND subject_id = $2`, [f.tenantId, consignmentId]))
      .rows[0]!;
    assert.ok(item, 'the completion opened its review item');
    return { consignmentId, itemId: item.id };
  };

  const named = (findings: Array<{ check: string; subject: string }>) => findings.map(({ check, subject }) => `${check} ${subject}`).sort();

  it('its item gone: reported by that check only, with the shortfall the lines recorded; a resolved item still counts', async () => {
    const f = await setup();
    const { consignmentId, itemId } = await leftShort(f);
    assert.deepEqual(await integrityFindings(t.admin, f.tenantId), []);
    // Resolved (by another person), the item still names the shortfall: nothing to report.
    const resolved = await f.manager.post(`/v1/review-items/${itemId}/resolve`, { note: 'two soap were sold at the counter unrecorded' }, k());
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    assert.deepEqual(await integrityFindings(t.admin, f.tenantId), []);

    await withTriggersOff(t.admin, [['DELETE FROM review_items WHERE tenant_id = $1 AND id = $2', [f.tenantId, itemId]]]);
    const findings = await integrityFindings(t.admin, f.tenantId);
    assert.deepEqual(named(findings), [`${CHECK} consignment:${consignmentId}`], JSON.stringify(findings));
    const detail = findings[0]!.detail as Record<string, unknown>;
    assert.deepEqual(detail.shortages, [{ sku_id: f.soap, requested: 5, available: 3, shortfall: 2 }]);
    assert.deepEqual(detail.review_items, []);
    // GET /v1/integrity runs it as the app role, under row-level security: the same finding, a critical one.
    const run = await f.owner.get('/v1/integrity');
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.deepEqual(
      run.body.findings.map(({ check, severity, subject }: { check: string; severity: string; subject: string }) => `${check} ${severity} ${subject}`),
      [`${CHECK} critical consignment:${consignmentId}`],
    );
  });

  it('its figures, store, operation or consignment not the recorded ones: reported by that check only, and nothing once put back', async () => {
    const f = await setup();
    const { consignmentId, itemId } = await leftShort(f);
    const otherOp = (await t.admin.query(`SELECT op_id FROM stock_ledger WHERE tenant_id = $1 AND kind = 'receipt' LIMIT 1`, [f.tenantId])).rows[0].op_id as string;
    const original = (await t.admin.query(`SELECT detail, store_id, op_id FROM review_items WHERE tenant_id = $1 AND id = $2`, [f.tenantId, itemId])).rows[0];
    for (const change of [
      `detail = jsonb_set(detail, '{shortages,0,shortfall}', '1')`,
      `detail = jsonb_set(detail, '{shortages,0,requested}', '4')`,
      `detail = jsonb_set(detail, '{shortages,0,available}', '2')`,
      // the tea that was not short, named as short
      `detail = jsonb_set(detail, '{shortages}', detail -> 'shortages' || jsonb_build_array(jsonb_build_object('sku_id', $4::text, 'requested', 4, 'available', 4, 'shortfall', 0)))`,
      `detail = jsonb_set(detail, '{shortages}', '[]')`,
      `detail = detail - 'shortages'`,
      `detail = jsonb_set(detail, '{consignment_id}', to_jsonb($5::text))`,
      `store_id = $3`,
      `op_id = $6`,
    ]) {
      await withTriggersOff(t.admin, [
        [`UPDATE review_items SET ${change} WHERE tenant_id = $1 AND id = $2 AND $3::uuid IS NOT NULL AND $4::uuid IS NOT NULL AND $5::uuid IS NOT NULL AND $6::uuid IS NOT NULL`, [f.tenantId, itemId, f.annex, f.tea, randomUUID(), otherOp]],
      ]);
      const findings = await integrityFindings(t.admin, f.tenantId);
      assert.deepEqual(named(findings), [`${CHECK} consignment:${consignmentId}`], `${change}: ${JSON.stringify(findings)}`);
      await withTriggersOff(t.admin, [
        ['UPDATE review_items SET detail = $3, store_id = $4, op_id = $5 WHERE tenant_id = $1 AND id = $2', [f.tenantId, itemId, original.detail, original.store_id, original.op_id]],
      ]);
      assert.deepEqual(await integrityFindings(t.admin, f.tenantId), [], `${change} put back`);
    }
  });

  it('an item naming a consignment that recorded no shortfall, or none at all, or a second item for one: reported by that check only', async () => {
    const f = await setup();
    const { consignmentId, itemId } = await leftShort(f);
    const online = (await complete(f, { lines: [{ sku_id: f.tea, quantity: 1 }] })).consignment.id as string;
    const offlineInFull = (await complete(f, { lines: [{ sku_id: f.tea, quantity: 1 }], client_created_at: hoursAgo(1) })).consignment.id as string;
    assert.deepEqual(await integrityFindings(t.admin, f.tenantId), []);
    // a copy of the item, about another subject (its dedupe key left out: one open item per key)
    const copy = `INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, detail, op_id)
                  SELECT tenant_id, $3, kind, severity, subject_type, $4, store_id, detail, op_id FROM review_items WHERE tenant_id = $1 AND id = $2`;
    const ghost = randomUUID();
    for (const subject of [online, offlineInFull, ghost, consignmentId]) {
      const copyId = randomUUID();
      await withTriggersOff(t.admin, [[copy, [f.tenantId, itemId, copyId, subject]]]);
      const findings = await integrityFindings(t.admin, f.tenantId);
      assert.deepEqual(named(findings), [`${CHECK} consignment:${subject}`], JSON.stringify(findings));
      assert.deepEqual(((findings[0]!.detail as { review_items: Array<{ id: string }> }).review_items).map(({ id }) => id).includes(copyId), true);
      await withTriggersOff(t.admin, [['DELETE FROM review_items WHERE tenant_id = $1 AND id = $2', [f.tenantId, copyId]]]);
      assert.deepEqual(await integrityFindings(t.admin, f.tenantId), []);
    }
  });

  it('a completion whose settlement was not recorded and whose goods were short: both items naming each other pass; the shortage item altered is this check\'s finding alone', async () => {
    const f = await setup();
    const left = await complete(f, { lines: [{ sku_id: f.soap, quantity: 3 }] });
    const settledOnline = await complete(f, { settlement: { consignment_id: left.consignment.id, lines: [{ sku_id: f.soap, sold_quantity: 3, returned_quantity: 0 }] } });
    assert.ok(settledOnline.settlement);
    // The phone had settled it offline (2 sold, 1 taken back) and left 2 soap: none in the store.
    const late = await complete(f, {
      lines: [{ sku_id: f.soap, quantity: 2 }],
      settlement: { consignment_id: left.consignment.id, lines: [{ sku_id: f.soap, sold_quantity: 2, returned_quantity: 1 }] },
      client_created_at: hoursAgo(2),
    });
    assert.equal(late.settlement, null);
    assert.deepEqual(late.consignment.lines.map((line: { shortfall_quantity: number }) => line.shortfall_quantity), [2]);
    assert.deepEqual(await integrityFindings(t.admin, f.tenantId), []);
    await withTriggersOff(t.admin, [
      [
        `UPDATE review_items SET detail = jsonb_set(detail, '{shortages,0,shortfall}', '1') WHERE tenant_id = $1 AND kind = 'offline_consignment_shortage' AND subject_id = $2`,
        [f.tenantId, late.consignment.id],
      ],
    ]);
    assert.deepEqual(named(await integrityFindings(t.admin, f.tenantId)), [`${CHECK} consignment:${late.consignment.id}`]);
  });
});
