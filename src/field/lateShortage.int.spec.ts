import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { assertFieldBooksConsistent, fieldRowCounts, givenFieldDepot } from './testkit.js';

const SHOP = { latitude: 59.329323, longitude: 18.068581 };

/**
 * Goods left on a visit queued offline, synced when the store is now short.
 * The goods physically left the store already: like an offline sale, the
 * completion takes what is there down to 0 through the ledger, records the
 * missing quantity on the consignment line as `shortfall_quantity` and opens
 * an `offline_consignment_shortage` review item. An online completion (no
 * client_created_at) is still 409 insufficient_stock, nothing written.
 */
describe('field sales: goods left on a visit synced late when the store is short', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let manager: ApiClient;
  let agent: ApiClient;
  let agentId: string;
  let storeId: string;

  before(async () => {
    t = await startTestApp();
    const depot = await givenFieldDepot(t);
    ({ owner, tenantId, storeId, manager } = depot);
    ({ client: agent, id: agentId } = depot.agent);
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  /** A SKU of its own, with `stock` pieces in the store (0: no receipt at all). */
  const sku = async (stock: number, price = 100) => {
    const created = await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'Item', unit: 'piece', price });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    if (stock > 0) assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: created.body.id, quantity: stock }] }, k())).status, 201);
    return created.body.id as string;
  };
  const newPointOfSale = async () => {
    const created = await manager.post('/v1/points-of-sale', { name: `Kiosk ${randomUUID().slice(0, 6)}`, store_id: storeId, ...SHOP }, k());
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.id as string;
  };
  const schedule = async (pointOfSale: string) => {
    const response = await manager.post('/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agentId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.id as string;
  };
  const stockOf = async (skuId: string) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, skuId])).rows[0]?.quantity ?? 0);
  const count = async (sqlText: string, params: unknown[]) => Number((await t.admin.query(sqlText, params)).rows[0].count);
  const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();

  const written = () => fieldRowCounts(t, tenantId);

  const assertBooksConsistent = () => assertFieldBooksConsistent(t, tenantId);

  const assertProblem = (response: ApiResponse, status: number, code: string) => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.equal(response.body.code, code, JSON.stringify(response.body));
  };

  it('offline, short: 200, the store goes to 0 through the ledger, the lines keep the full quantity and their shortfall, a review item; replays identical; a later settlement returns goods in full', async () => {
    const pos = await newPointOfSale();
    const [soap, tea, jam] = [await sku(4, 120), await sku(50, 300), await sku(0, 250)];
    const visit = await schedule(pos);
    const body = {
      ...SHOP,
      lines: [{ sku_id: soap, quantity: 10 }, { sku_id: tea, quantity: 5 }, { sku_id: jam, quantity: 3 }],
      client_created_at: hoursAgo(5),
    };
    const key = k();
    const done = await agent.post(`/v1/visits/${visit}/complete`, body, key);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    const consignment = done.body.consignment;
    assert.deepEqual(
      consignment.lines,
      [
        { sku_id: soap, quantity: 10, unit_price: 120, shortfall_quantity: 6 },
        { sku_id: tea, quantity: 5, unit_price: 300, shortfall_quantity: 0 },
        { sku_id: jam, quantity: 3, unit_price: 250, shortfall_quantity: 3 },
      ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)),
    );
    assert.equal(done.body.visit.status, 'completed');
    assert.equal(await stockOf(soap), 0);
    assert.equal(await stockOf(tea), 45);
    assert.equal(await stockOf(jam), 0);
    const op = done.body.visit.completed_by_op as string;
    assert.deepEqual(
      (await t.admin.query(`SELECT sku_id, quantity_change::int, quantity_after::int FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY sku_id`, [tenantId, op])).rows,
      [
        { sku_id: soap, quantity_change: -4, quantity_after: 0 },
        { sku_id: tea, quantity_change: -5, quantity_after: 45 },
      ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)),
    );

    // The review item.
    const items = await owner.get('/v1/review-items?kind=offline_consignment_shortage');
    assert.equal(items.status, 200);
    const item = items.body.items.find((row: { subject_id: string }) => row.subject_id === consignment.id);
    assert.ok(item, JSON.stringify(items.body));
    assert.equal(item.subject_type, 'consignment');
    assert.equal(item.store_id, storeId);
    assert.equal(item.op_id, op);
    const { client_created_at: reportedAt, ...detail } = item.detail;
    assert.equal(new Date(reportedAt).toISOString(), done.body.visit.client_created_at);
    assert.deepEqual(detail, {
      visit_id: visit,
      consignment_id: consignment.id,
      point_of_sale_id: pos,
      shortages: [
        { sku_id: soap, requested: 10, available: 4, shortfall: 6 },
        { sku_id: jam, requested: 3, available: 0, shortfall: 3 },
      ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)),
    });
    assert.deepEqual((await owner.get(`/v1/operations/${op}`)).body.effects.filter((e: { table: string }) => e.table === 'review_items').length, 1);

    // Replays: same key, another key, no key.
    const before = await written();
    for (const again of [
      await agent.post(`/v1/visits/${visit}/complete`, body, key),
      await agent.post(`/v1/visits/${visit}/complete`, { ...body, lines: [...body.lines].reverse() }, k()),
      await agent.post(`/v1/visits/${visit}/complete`, body),
    ]) {
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, done.body);
    }
    // The replay under another key keeps its answer under that key too (one key record); nothing else.
    assert.deepEqual(await written(), { ...before, keys: before.keys + 1 });
    assert.deepEqual((await agent.get(`/v1/visits/${visit}`)).body.consignment.lines, consignment.lines);
    await assertBooksConsistent();

    // The next visit settles it: the goods returned come back in full (they are physically there).
    const next = await schedule(pos);
    const settled = await agent.post(
      `/v1/visits/${next}/complete`,
      {
        ...SHOP,
        lines: [],
        settlement: {
          consignment_id: consignment.id,
          lines: [
            { sku_id: soap, sold_quantity: 2, returned_quantity: 8 },
            { sku_id: tea, sold_quantity: 5, returned_quantity: 0 },
            { sku_id: jam, sold_quantity: 0, returned_quantity: 3 },
          ],
        },
      },
      k(),
    );
    assert.equal(settled.status, 200, JSON.stringify(settled.body));
    assert.equal(settled.body.settlement.amount_owed, 2 * 120 + 5 * 300);
    assert.equal(await stockOf(soap), 8);
    assert.equal(await stockOf(jam), 3);
    await assertBooksConsistent();
  });

  it('offline, goods returned and left again on one visit when the store has none: what came back is taken again, the rest is the shortfall', async () => {
    const pos = await newPointOfSale();
    const soap = await sku(10, 120);
    const first = await schedule(pos);
    const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
    assert.equal(left.status, 200, JSON.stringify(left.body));
    assert.equal(await stockOf(soap), 0);
    const second = await schedule(pos);
    const done = await agent.post(
      `/v1/visits/${second}/complete`,
      {
        ...SHOP,
        lines: [{ sku_id: soap, quantity: 7 }],
        settlement: { consignment_id: left.body.consignment.id, lines: [{ sku_id: soap, sold_quantity: 7, returned_quantity: 3 }] },
        client_created_at: hoursAgo(1),
      },
      k(),
    );
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.deepEqual(done.body.consignment.lines, [{ sku_id: soap, quantity: 7, unit_price: 120, shortfall_quantity: 4 }]);
    assert.equal(await stockOf(soap), 0);
    await assertBooksConsistent();
  });

  it('offline, its settlement not recorded (settled meanwhile) AND its goods short, in one completion: each review item names the other; the shortage says what the unrecorded settlement reported returned, which the store never got', async () => {
    const pos = await newPointOfSale();
    const [soap, tea] = [await sku(10, 120), await sku(1, 300)];
    const first = await schedule(pos);
    const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
    assert.equal(left.status, 200, JSON.stringify(left.body));
    const consignmentId = left.body.consignment.id as string;
    assert.equal(await stockOf(soap), 0);
    // Meanwhile the manager settles it online on another visit: all 10 sold, nothing back.
    const online = await manager.post(`/v1/visits/${await schedule(pos)}/complete`, { ...SHOP, lines: [], settlement: { consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: 10, returned_quantity: 0 }] } }, k());
    assert.equal(online.status, 200, JSON.stringify(online.body));
    assert.equal(await stockOf(soap), 0);

    // The agent's phone had settled it offline (7 sold, 3 taken back) and left 7 soap — the 3 taken back and 4 more — and 2 tea.
    const late = await schedule(pos);
    const body = {
      ...SHOP,
      lines: [{ sku_id: soap, quantity: 7 }, { sku_id: tea, quantity: 2 }],
      settlement: { consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: 7, returned_quantity: 3 }] },
      client_created_at: hoursAgo(2),
    };
    const done = await agent.post(`/v1/visits/${late}/complete`, body, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.settlement, null);
    const conflictItemId = done.body.settlement_conflict?.review_item_id as string;
    assert.ok(conflictItemId, JSON.stringify(done.body));
    const newConsignment = done.body.consignment;
    // The 3 soap the unrecorded settlement took back never reached the store's stock: not available to the goods left.
    assert.deepEqual(
      newConsignment.lines,
      [
        { sku_id: soap, quantity: 7, unit_price: 120, shortfall_quantity: 7 },
        { sku_id: tea, quantity: 2, unit_price: 300, shortfall_quantity: 1 },
      ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)),
    );
    assert.deepEqual([await stockOf(soap), await stockOf(tea)], [0, 0]);

    const items = (await owner.get(`/v1/review-items?status=open`)).body.items as Array<{ id: string; kind: string; subject_id: string; op_id: string; detail: Record<string, unknown> }>;
    const shortage = items.find((item) => item.kind === 'offline_consignment_shortage' && item.subject_id === newConsignment.id);
    const conflict = items.find((item) => item.id === conflictItemId);
    assert.ok(shortage && conflict, JSON.stringify(items));
    assert.equal(conflict.kind, 'consignment_settled_twice');
    // The shortage: a person correcting the store's stock must know that 3 of the 7 soap were,
    // by the agent's report, taken back from the point of sale — not missing from the store.
    assert.deepEqual(shortage.detail.shortages, [
      { sku_id: soap, requested: 7, available: 0, shortfall: 7, returned_not_recorded: 3 },
      { sku_id: tea, requested: 2, available: 1, shortfall: 1, returned_not_recorded: 0 },
    ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)));
    assert.equal(shortage.detail.settlement_conflict_review_item_id, conflictItemId);
    // The conflict: whoever decides on the settlement must know its visit's goods left were short.
    assert.equal(conflict.detail.shortage_review_item_id, shortage.id);
    assert.deepEqual(conflict.detail.reported, { lines: [{ sku_id: soap, sold_quantity: 7, returned_quantity: 3, unit_price: 120 }], amount_owed: 7 * 120 });

    // Replays (same goods and settlement, any key) and GET agree with the answer; nothing written.
    const before = await written();
    const again = await agent.post(`/v1/visits/${late}/complete`, { ...body, client_created_at: hoursAgo(1) }, k());
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true']);
    assert.deepEqual(again.body, done.body);
    assert.deepEqual((await agent.get(`/v1/visits/${late}`)).body, done.body);
    // Its answer kept under the new key (one key record); nothing else.
    assert.deepEqual(await written(), { ...before, keys: before.keys + 1 });
    await assertBooksConsistent();
  });

  it('online, short: still 409 insufficient_stock, nothing written', async () => {
    const pos = await newPointOfSale();
    const soap = await sku(2, 120);
    const visit = await schedule(pos);
    const before = await written();
    const refused = await agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 3 }] }, k());
    assertProblem(refused, 409, 'insufficient_stock');
    assert.deepEqual(refused.body.shortages, [{ sku_id: soap, requested: 3, available: 2 }]);
    assert.deepEqual(await written(), before);
    // Offline, bad input is still bad input: a SKU listed twice is 400, nothing written.
    const bad = await agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 3 }, { sku_id: soap, quantity: 1 }], client_created_at: hoursAgo(1) }, k());
    assertProblem(bad, 400, 'validation_failed');
    assert.deepEqual(await written(), before);
    await assertBooksConsistent();
  });

  it('integrity: a shortfall on a consignment left online, or a ledger that took more than quantity − shortfall, is reported by consignment_stock_matches_ledger', async () => {
    const own = await t.newTenant();
    const store = (await own.owner.post('/v1/stores', { code: 'OWN', name: 'Own' })).body.id as string;
    const item = (await own.owner.post('/v1/skus', { code: 'ITEM', name: 'Item', unit: 'piece', price: 50 })).body.id as string;
    assert.equal((await own.owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: item, quantity: 5 }] })).status, 201);
    const agentToken = (await own.owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [store] })).body.id as string;
    const pos = (await own.owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, ...SHOP })).body.id as string;
    const complete = async (body: object) => {
      const visit = await own.owner.post('/v1/visits', { point_of_sale_id: pos, agent_token_id: agentToken, scheduled_for: new Date().toISOString() }, k());
      const done = await own.owner.post(`/v1/visits/${visit.body.id}/complete`, { ...SHOP, ...body }, k());
      assert.equal(done.status, 200, JSON.stringify(done.body));
      return done.body;
    };
    const online = await complete({ lines: [{ sku_id: item, quantity: 2 }] });
    const offline = await complete({ lines: [{ sku_id: item, quantity: 4 }], client_created_at: hoursAgo(1) });
    assert.equal(offline.consignment.lines[0].shortfall_quantity, 1);
    assert.deepEqual(await integrityFindings(t.admin, own.tenantId), []);

    // A shortfall on the online one (its ledger took less than its quantity, as the shortfall says).
    await withTriggersOff(t.admin, [
      [`UPDATE consignment_lines SET shortfall_quantity = 1 WHERE consignment_id = $1`, [online.consignment.id]],
      [`UPDATE stock_ledger SET quantity_change = -1 WHERE op_id = $1`, [online.visit.completed_by_op]],
    ]);
    const onlineFindings = (await integrityFindings(t.admin, own.tenantId, ['consignment_stock_matches_ledger'])).map((finding) => finding.subject);
    assert.deepEqual(onlineFindings, [`operation:${online.visit.completed_by_op}/sku:${item}`]);
    await withTriggersOff(t.admin, [
      [`UPDATE consignment_lines SET shortfall_quantity = 0 WHERE consignment_id = $1`, [online.consignment.id]],
      [`UPDATE stock_ledger SET quantity_change = -2 WHERE op_id = $1`, [online.visit.completed_by_op]],
    ]);
    assert.deepEqual(await integrityFindings(t.admin, own.tenantId, ['consignment_stock_matches_ledger']), []);
    // The offline one's ledger taking the full quantity, shortfall and all.
    await withTriggersOff(t.admin, [[`UPDATE stock_ledger SET quantity_change = -4 WHERE op_id = $1`, [offline.visit.completed_by_op]]]);
    const offlineFindings = (await integrityFindings(t.admin, own.tenantId, ['consignment_stock_matches_ledger'])).map((finding) => finding.subject);
    assert.deepEqual(offlineFindings, [`operation:${offline.visit.completed_by_op}/sku:${item}`]);
  });

  it('offline completions and cash sales racing for the last units: every completion recorded, stock never negative, ledger = quantity − shortfall, one review item per short consignment', async (context) => {
    let shortRounds = 0;
    for (let round = 0; round < 10; round++) {
      const pos = await newPointOfSale();
      const lamp = await sku(6, 500);
      const visit = await schedule(pos);
      const [completion, sale1, sale2] = await Promise.all([
        agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [{ sku_id: lamp, quantity: 4 }], client_created_at: hoursAgo(2) }, k()),
        owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: lamp, quantity: 3, unit_price: 500 }] }, k()),
        owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: lamp, quantity: 2, unit_price: 500 }] }, k()),
      ]);
      assert.equal(completion.status, 200, JSON.stringify(completion.body));
      for (const sale of [sale1, sale2]) assert.ok(sale.status === 201 || (sale.status === 409 && sale.body.code === 'insufficient_stock'), JSON.stringify(sale.body));
      const sold = (sale1.status === 201 ? 3 : 0) + (sale2.status === 201 ? 2 : 0);
      const shortfall = completion.body.consignment.lines[0].shortfall_quantity as number;
      const taken = 4 - shortfall;
      assert.ok(sold + taken <= 6);
      assert.equal(await stockOf(lamp), 6 - sold - taken);
      // Short only when the store could not give all 4.
      if (shortfall > 0) {
        shortRounds++;
        assert.equal(await stockOf(lamp), 0);
      }
      assert.equal(
        await count(`SELECT count(*) FROM review_items WHERE tenant_id = $1 AND kind = 'offline_consignment_shortage' AND subject_id = $2`, [tenantId, completion.body.consignment.id]),
        shortfall > 0 ? 1 : 0,
      );
      assert.equal(
        await count(`SELECT coalesce(-sum(quantity_change), 0) AS count FROM stock_ledger WHERE tenant_id = $1 AND kind = 'consignment_out' AND reason = $2`, [tenantId, `consignment ${completion.body.consignment.id}`]),
        taken,
      );
    }
    context.diagnostic(`rounds where the completion came up short: ${shortRounds} of 10`);
    await assertBooksConsistent();
  });
});
