import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';

/**
 * Reorder levels: PUT /v1/stores/{store_id}/stock/{sku_id}/reorder-level
 * `{ quantity }` (null removes it), shown on GET …/stock/{sku_id}, and the
 * low-stock list GET /v1/stores/{store_id}/stock/low.
 */
describe('reorder levels and the low-stock list', () => {
  let t: TestApp;
  let owner: ApiClient;
  let manager: ApiClient;
  let tenantId: string;
  let store: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = await givenStore(owner, 'R1');
    manager = await givenToken(t, owner, 'manager');
  });
  after(() => t.close());

  const levelPath = (storeId: string, skuId: string) => `/v1/stores/${storeId}/stock/${skuId}/reorder-level`;

  const levelEvents = async (storeId: string, skuId: string) =>
    (
      await t.admin.query(`SELECT type, op_id, before, after FROM events WHERE tenant_id = $1 AND subject_type = 'reorder_level' AND subject_id = $2 ORDER BY id`, [
        tenantId,
        `${storeId}/${skuId}`,
      ])
    ).rows as Array<{ type: string; op_id: string; before: { reorder_level: number | null } | null; after: { reorder_level: number | null } }>;

  const levelRow = async (storeId: string, skuId: string) =>
    (await t.admin.query(`SELECT quantity FROM stock_reorder_levels WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, storeId, skuId])).rows[0] as
      | { quantity: string | null }
      | undefined;

  const writeCounts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM stock_reorder_levels WHERE tenant_id = $1)::int AS levels,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantId],
      )
    ).rows[0];

  it('sets, replaces and removes a level (null), shown on the SKU\'s stock; each change audited before → after, the same level again changes nothing', async () => {
    const rice = await givenSku(owner, 'RICE', 'kg');
    await givenStock(owner, store, [{ sku_id: rice, quantity: 5000 }]);
    assert.equal((await owner.get(`/v1/stores/${store}/stock/${rice}`)).body.reorder_level, null);

    const set = await manager.put(levelPath(store, rice), { quantity: 2000 });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual(set.body, { store_id: store, sku_id: rice, reorder_level: 2000 });
    const stock = await owner.get(`/v1/stores/${store}/stock/${rice}`);
    assert.equal(stock.status, 200);
    assert.equal(stock.body.quantity, 5000);
    assert.equal(stock.body.reorder_level, 2000);

    const replaced = await manager.put(levelPath(store, rice), { quantity: 3000 });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.reorder_level, 3000);
    const same = await manager.put(levelPath(store, rice), { quantity: 3000 });
    assert.equal(same.status, 200);
    assert.equal(same.body.reorder_level, 3000);
    const removed = await manager.put(levelPath(store, rice), { quantity: null });
    assert.equal(removed.status, 200);
    assert.deepEqual(removed.body, { store_id: store, sku_id: rice, reorder_level: null });
    assert.equal((await owner.get(`/v1/stores/${store}/stock/${rice}`)).body.reorder_level, null);
    assert.equal((await levelRow(store, rice))!.quantity, null);
    // Removing it again changes nothing either.
    assert.equal((await manager.put(levelPath(store, rice), { quantity: null })).status, 200);

    const events = await levelEvents(store, rice);
    assert.deepEqual(
      events.map((event) => [event.type, event.before?.reorder_level ?? null, event.after.reorder_level]),
      [
        ['stock.reorder_level.set', null, 2000],
        ['stock.reorder_level.set', 2000, 3000],
        ['stock.reorder_level.set', 3000, null],
      ],
    );
    // The operation names the level row it changed, for the store.
    const operation = await owner.get(`/v1/operations/${events[0]!.op_id}`);
    assert.equal(operation.status, 200, JSON.stringify(operation.body));
    assert.deepEqual(operation.body.effects, [{ table: 'stock_reorder_levels', id: `${store}/${rice}`, action: 'created' }]);
    assert.deepEqual((await owner.get(`/v1/operations/${events[1]!.op_id}`)).body.effects, [{ table: 'stock_reorder_levels', id: `${store}/${rice}`, action: 'updated' }]);
    // The row keeps the operation that made it (op_id never changes) and names the one that last changed it.
    const row = (await t.admin.query(`SELECT op_id, changed_by_op FROM stock_reorder_levels WHERE store_id = $1 AND sku_id = $2`, [store, rice])).rows[0];
    assert.deepEqual(row, { op_id: events[0]!.op_id, changed_by_op: events[2]!.op_id });
    await assert.rejects(t.admin.query(`UPDATE stock_reorder_levels SET op_id = $3 WHERE store_id = $1 AND sku_id = $2`, [store, rice, events[1]!.op_id]));
    // Not revertible: the earlier level is set again instead.
    const revert = await owner.post(`/v1/operations/${events[1]!.op_id}/revert`, {});
    assert.equal(revert.status, 422, JSON.stringify(revert.body));
    assert.equal(revert.body.code, 'unprocessable');
    assert.equal((await levelEvents(store, rice)).length, 3);
    // The as_of answer is as it was: no reorder_level.
    const asOf = await owner.get(`/v1/stores/${store}/stock/${rice}?as_of=${encodeURIComponent(new Date().toISOString())}`);
    assert.equal(asOf.status, 200, JSON.stringify(asOf.body));
    assert.equal('reorder_level' in asOf.body, false);
  });

  it('an Idempotency-Key replays the first answer, applied once; another body under it is 422', async () => {
    const oil = await givenSku(owner, 'OIL');
    const key = randomUUID();
    const first = await manager.put(levelPath(store, oil), { quantity: 7 }, { idempotencyKey: key });
    // Changed meanwhile: the replay still answers the first, and does not set 7 again.
    assert.equal((await manager.put(levelPath(store, oil), { quantity: 9 })).status, 200);
    const again = await manager.put(levelPath(store, oil), { quantity: 7 }, { idempotencyKey: key });
    assert.equal(first.status, 200);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assert.equal(Number((await levelRow(store, oil))!.quantity), 9);
    const other = await manager.put(levelPath(store, oil), { quantity: 8 }, { idempotencyKey: key });
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    assert.equal((await levelEvents(store, oil)).length, 2);
  });

  it('a bad quantity is 400 at /body/quantity, nothing written', async () => {
    const salt = await givenSku(owner, 'SALT');
    const before = await writeCounts();
    for (const body of [{ quantity: -1 }, { quantity: 1.5 }, { quantity: 1_000_000_000_000_001 }, { quantity: '5' }, {}, { quantity: 5, note: 'x' }]) {
      const response = await manager.put(levelPath(store, salt), body);
      assert.equal(response.status, 400, JSON.stringify([body, response.body]));
      assert.equal(response.body.code, 'validation_failed');
      assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.ok(
        (response.body.errors as Array<{ path: string }>).some((error) => error.path === '/body/quantity' || error.path === '/body' || error.path === '/body/note'),
        JSON.stringify(response.body),
      );
    }
    // 10^15, the largest a balance may hold, is taken.
    assert.equal((await manager.put(levelPath(store, salt), { quantity: 1_000_000_000_000_000 })).status, 200);
    const afterCounts = await writeCounts();
    assert.equal(afterCounts.levels, before.levels + 1);
    // One operation (its command event and the level's event), for the one level set.
    assert.equal(afterCounts.operations, before.operations + 1);
    assert.equal(afterCounts.keys, before.keys);
    assert.equal((await levelEvents(store, salt)).length, 1);
  });

  it('another store\'s token, an unknown store or SKU: 404; a role without stock.adjust: 403; nothing written', async () => {
    const flour = await givenSku(owner, 'FLOUR');
    const other = await givenStore(owner, 'R2');
    const limited = await givenToken(t, owner, 'manager', [other]);
    const before = await writeCounts();
    const outOfScope = await limited.put(levelPath(store, flour), { quantity: 1 });
    assert.equal(outOfScope.status, 404, JSON.stringify(outOfScope.body));
    assert.equal((await limited.get(`/v1/stores/${store}/stock/low`)).status, 404);
    const unknownStore = await manager.put(levelPath(randomUUID(), flour), { quantity: 1 });
    assert.equal(unknownStore.status, 404);
    const unknownSku = await manager.put(levelPath(store, randomUUID()), { quantity: 1 });
    assert.equal(unknownSku.status, 404);
    assert.equal(unknownSku.body.code, 'not_found');
    assert.equal((await manager.get(`/v1/stores/${randomUUID()}/stock/low`)).status, 404);
    for (const role of ['cashier', 'field_agent', 'auditor']) {
      const client = await givenToken(t, owner, role);
      const refused = await client.put(levelPath(store, flour), { quantity: 1 });
      assert.equal(refused.status, 403, `${role}: ${JSON.stringify(refused.body)}`);
      assert.equal(refused.body.code, 'forbidden');
    }
    const afterCounts = await writeCounts();
    // The tokens made above are operations and events of their own; no level, no level event.
    assert.equal(afterCounts.levels, before.levels);
    assert.equal((await levelEvents(store, flour)).length, 0);
    // The one that may set it in its own store: the limited manager in R2.
    assert.equal((await limited.put(levelPath(other, flour), { quantity: 1 })).status, 200);
  });

  it('the low-stock list: SKUs at or below their level (no balance = 0), after sales take stock under it and a receipt lifts it back; paged by cursor', async () => {
    const shop = await givenStore(owner, 'LOW');
    const tea = await givenSku(owner, 'TEA'); // level 10, stock 15 → sold to 9 → received to 14
    const jam = await givenSku(owner, 'JAM'); // level 5, never held: 0
    const gum = await givenSku(owner, 'GUM'); // no level, stock 0 after a sale
    const pen = await givenSku(owner, 'PEN'); // level 4, removed
    const cup = await givenSku(owner, 'CUP'); // level 3, stock exactly 3
    await givenStock(owner, shop, [
      { sku_id: tea, quantity: 15 },
      { sku_id: gum, quantity: 1 },
      { sku_id: cup, quantity: 3 },
    ]);
    for (const [sku, quantity] of [[tea, 10], [jam, 5], [pen, 4], [cup, 3]] as const) {
      assert.equal((await manager.put(levelPath(shop, sku), { quantity })).status, 200);
    }
    assert.equal((await manager.put(levelPath(shop, pen), { quantity: null })).status, 200);
    const cashier = await givenToken(t, owner, 'cashier');
    const sold = await cashier.post('/v1/sales', { store_id: shop, payment_method: 'cash', items: [{ sku_id: gum, quantity: 1, unit_price: 100 }] });
    assert.equal(sold.status, 201, JSON.stringify(sold.body));

    const low = async (query = '') => {
      const response = await cashier.get(`/v1/stores/${shop}/stock/low${query}`);
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return response.body as { items: Array<Record<string, unknown>>; next_cursor: string | null };
    };
    const row = (sku: string, code: string, quantity: number, level: number) => ({ sku_id: sku, code, name: `SKU ${code}`, quantity, reorder_level: level, shortfall: level - quantity });
    const bySku = (rows: Array<Record<string, unknown>>) => [...rows].sort((a, b) => String(a.sku_id).localeCompare(String(b.sku_id)));

    // Before: JAM (never held) and CUP (at its level).
    assert.deepEqual(await low(), { items: bySku([row(jam, 'JAM', 0, 5), row(cup, 'CUP', 3, 3)]), next_cursor: null });

    // Sales take TEA to 9, under its level of 10.
    const sale = await cashier.post('/v1/sales', { store_id: shop, payment_method: 'cash', items: [{ sku_id: tea, quantity: 6, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    const whenLow = bySku([row(jam, 'JAM', 0, 5), row(cup, 'CUP', 3, 3), row(tea, 'TEA', 9, 10)]);
    assert.deepEqual((await low()).items, whenLow);
    // Paged one at a time: every item once, in sku_id order, then next_cursor null.
    const walked: Array<Record<string, unknown>> = [];
    let cursor: string | null = null;
    do {
      const page: { items: Array<Record<string, unknown>>; next_cursor: string | null } = await low(`?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(page.items.length <= 1);
      walked.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor !== null);
    assert.deepEqual(walked, whenLow);
    // Another list's cursor is refused.
    const firstPage = await low('?limit=1');
    const foreign = await cashier.get(`/v1/stores/${shop}/stock?cursor=${firstPage.next_cursor}`);
    assert.equal(foreign.status, 400);

    // A receipt lifts TEA back to 14: off the list.
    await givenStock(owner, shop, [{ sku_id: tea, quantity: 5 }]);
    assert.deepEqual((await low()).items, bySku([row(jam, 'JAM', 0, 5), row(cup, 'CUP', 3, 3)]));
    // The SKU's own read agrees.
    const teaStock = await cashier.get(`/v1/stores/${shop}/stock/${tea}`);
    assert.equal(teaStock.body.quantity, 14);
    assert.equal(teaStock.body.reorder_level, 10);
    // The stock list itself is unchanged by levels: JAM, never held, is not in it.
    const stockList = await cashier.get(`/v1/stores/${shop}/stock`);
    assert.equal((stockList.body.items as Array<{ sku_id: string }>).some((item) => item.sku_id === jam), false);
    // Other methods at the list's path: 405 naming GET.
    const posted = await manager.post(`/v1/stores/${shop}/stock/low`, {});
    assert.equal(posted.status, 405);
    // A GET of the level's own path: 405 naming PUT.
    const got = await manager.get(levelPath(shop, tea));
    assert.equal(got.status, 405);
    assert.match(got.headers.get('allow') ?? '', /PUT/);
  });

  it('many concurrent PUTs of one SKU\'s level: they take turns — one level left, the last audited change\'s, every event\'s before the previous one\'s after', async () => {
    const soap = await givenSku(owner, 'SOAP-C');
    const levels = Array.from({ length: 24 }, (_, index) => (index + 1) * 10);
    const answers = await Promise.all(levels.map((quantity) => manager.put(levelPath(store, soap), { quantity }, { idempotencyKey: randomUUID() })));
    for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const { rows } = await t.admin.query(`SELECT quantity FROM stock_reorder_levels WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, soap]);
    assert.equal(rows.length, 1);
    const events = await levelEvents(store, soap);
    // Every level differs from the one before it: each PUT changed it, once.
    assert.equal(events.length, levels.length);
    assert.equal(events[0]!.before?.reorder_level ?? null, null);
    for (let index = 1; index < events.length; index++) assert.equal(events[index]!.before!.reorder_level, events[index - 1]!.after.reorder_level, `event ${index}`);
    assert.deepEqual(events.map((event) => event.after.reorder_level).sort((a, b) => a! - b!), levels);
    assert.equal(Number(rows[0].quantity), events[events.length - 1]!.after.reorder_level);
    assert.equal((await owner.get(`/v1/stores/${store}/stock/${soap}`)).body.reorder_level, Number(rows[0].quantity));
    // Each answer is what its own change set.
    assert.deepEqual(answers.map((answer) => answer.body.reorder_level).sort((a, b) => a - b), levels);
  });

  it('after all of the above, the integrity checks find nothing: every level change, a no-op one too, is a whole operation', async () => {
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
