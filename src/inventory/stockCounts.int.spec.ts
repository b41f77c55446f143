import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { findingsAfter, integrityFindings } from '../../test/support/integrity.js';

interface CountItem {
  sku_id: string;
  counted_quantity: number;
  expected_quantity: number;
  variance: number;
  quantity_after: number;
  ledger_id: number | null;
}

/**
 * Stock counts (POST /v1/stores/{id}/stock/counts) through HTTP, with the
 * rows left behind read afterwards: the variance is taken against the stock
 * at counted_at and applied to the current balance, so moves after
 * counted_at are kept.
 */
describe('stock counts: a stocktake while the shop stays open', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let otherStore: string;
  let rolls: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'SC1', name: 'Counted' })).body.id;
    otherStore = (await owner.post('/v1/stores', { code: 'SC2', name: 'Other' })).body.id;
    rolls = (await owner.post('/v1/skus', { code: 'ROLL', name: 'Roll', unit: 'metre', price: 90, tracks_pieces: true })).body.id;
  });
  after(() => t.close());

  const newSku = async (stock: number, storeId = store): Promise<string> => {
    const sku = await owner.post('/v1/skus', { code: `C-${randomUUID().slice(0, 8)}`, name: 'thing', unit: 'piece', price: 100 });
    assert.equal(sku.status, 201);
    if (stock > 0) assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: sku.body.id, quantity: stock }] })).status, 201);
    return sku.body.id;
  };
  const sell = async (sku: string, quantity: number, storeId = store) => {
    const response = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity, unit_price: 100 }] }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response;
  };
  const count = (body: unknown, key: string = randomUUID(), client: ApiClient = owner, storeId = store) =>
    client.post(`/v1/stores/${storeId}/stock/counts`, body, { idempotencyKey: key });
  /** The database's clock to the microsecond, as a counted_at. */
  const dbNow = async (): Promise<string> =>
    (await t.admin.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at;
  const balance = async (sku: string, storeId = store) =>
    Number((await t.admin.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, storeId, sku])).rows[0]?.quantity ?? 0);
  const rowsWritten = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT count(*) FROM stock_balances WHERE tenant_id = $1)::int AS balances,
                (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1)::int AS stock,
                (SELECT count(*) FROM stock_counts WHERE tenant_id = $1)::int AS counts,
                (SELECT count(*) FROM stock_count_lines WHERE tenant_id = $1)::int AS lines`,
        [tenantId],
      )
    ).rows[0];

  it('takes the variance against the stock at counted_at and keeps the sales made after it', async () => {
    const sku = await newSku(100);
    await sell(sku, 30);
    const countedAt = await dbNow();
    await sell(sku, 10); // after the count: kept
    assert.equal(await balance(sku), 60);

    // The shelf held 65 at countedAt, where the system said 70: 5 missing.
    const response = await count({ items: [{ sku_id: sku, counted_quantity: 65 }], counted_at: countedAt, reference: 'Stocktake aisle 3' });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const body = response.body as { id: string; op_id: string; store_id: string; counted_at: string; counted_at_exact: string; items: CountItem[] };
    assert.equal(body.counted_at_exact, countedAt);
    assert.equal(body.counted_at, new Date(countedAt).toISOString());
    assert.equal(body.items.length, 1);
    const [line] = body.items;
    assert.deepEqual({ ...line, ledger_id: undefined }, { sku_id: sku, counted_quantity: 65, expected_quantity: 70, variance: -5, quantity_after: 55, ledger_id: undefined });
    assert.equal(await balance(sku), 55, 'the 10 sold after counted_at stay sold');

    // One ledger row of kind count, the reference as its reason, named by the line.
    const ledger = (
      await t.admin.query(`SELECT id::int, kind, quantity_change::int AS change, quantity_after::int AS after, reason, op_id FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 ORDER BY id`, [tenantId, store, sku])
    ).rows;
    assert.deepEqual(ledger.map((row) => [row.kind, row.change, row.after]), [['receipt', 100, 100], ['sale', -30, 70], ['sale', -10, 60], ['count', -5, 55]]);
    assert.equal(ledger[3].reason, 'Stocktake aisle 3');
    assert.equal(ledger[3].op_id, body.op_id);
    assert.equal(line!.ledger_id, ledger[3].id);

    // The count is kept, with its lines.
    const stored = (await t.admin.query(`SELECT store_id, reference, op_id FROM stock_counts WHERE tenant_id = $1 AND id = $2`, [tenantId, body.id])).rows;
    assert.deepEqual(stored, [{ store_id: store, reference: 'Stocktake aisle 3', op_id: body.op_id }]);
    const one = await owner.get(`/v1/stores/${store}/stock/counts/${body.id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body, body);
    assert.equal(one.body.store_id, store);

    // GET /v1/operations shows the count, the ledger row and the balance.
    const operation = await owner.get(`/v1/operations/${body.op_id}`);
    assert.equal(operation.status, 200);
    assert.equal(operation.body.type, 'stock.count');
    const effects = (operation.body.effects as Array<{ table: string; id: string; action: string }>).map((effect) => `${effect.table} ${effect.id} ${effect.action}`).sort();
    assert.deepEqual(effects, [`stock_balances ${store}/${sku} updated`, `stock_counts ${body.id} created`, `stock_ledger ${ledger[3].id} created`].sort());
    // Audited: the count as answered.
    const events = (await t.admin.query(`SELECT subject_type, subject_id, before, after FROM events WHERE tenant_id = $1 AND op_id = $2 AND subject_type = 'stock_count'`, [tenantId, body.op_id])).rows;
    assert.deepEqual(events.map((event) => [event.subject_type, event.subject_id]), [['stock_count', body.id]]);
    assert.deepEqual(events[0].before, { store_id: store, balances: [{ sku_id: sku, quantity: 60 }] }, 'the balance the count found');
    assert.equal(events[0].after.items[0].quantity_after, 55);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('answers every line in sku_id order; a variance of 0 writes no ledger row, a SKU the store never held starts from 0', async () => {
    const exact = await newSku(40);
    const found = await newSku(10);
    const fresh = await newSku(0);
    const none = await newSku(0);
    const before = await rowsWritten();
    const items = [
      { sku_id: exact, counted_quantity: 40 },
      { sku_id: found, counted_quantity: 12 },
      { sku_id: fresh, counted_quantity: 7 },
      { sku_id: none, counted_quantity: 0 },
    ];
    const response = await count({ items });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const answered = (response.body.items as CountItem[]).map(({ ledger_id, ...line }) => ({ ...line, has_row: ledger_id !== null }));
    const wanted = [
      { sku_id: exact, counted_quantity: 40, expected_quantity: 40, variance: 0, quantity_after: 40, has_row: false },
      { sku_id: found, counted_quantity: 12, expected_quantity: 10, variance: 2, quantity_after: 12, has_row: true },
      { sku_id: fresh, counted_quantity: 7, expected_quantity: 0, variance: 7, quantity_after: 7, has_row: true },
      { sku_id: none, counted_quantity: 0, expected_quantity: 0, variance: 0, quantity_after: 0, has_row: false },
    ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1));
    assert.deepEqual(answered, wanted);
    const afterward = await rowsWritten();
    assert.equal(afterward.ledger - before.ledger, 2, 'two ledger rows: the lines whose variance is not 0');
    assert.equal(afterward.lines - before.lines, 4);
    assert.equal(afterward.counts - before.counts, 1);
    assert.deepEqual([await balance(exact), await balance(found), await balance(fresh), await balance(none)], [40, 12, 7, 0]);
    // The balances it created (the store never held those SKUs) are among its effects.
    const operation = await owner.get(`/v1/operations/${response.body.op_id}`);
    const effects = (operation.body.effects as Array<{ table: string; id: string; action: string }>).map((effect) => `${effect.table} ${effect.id} ${effect.action}`);
    for (const sku of [fresh, none]) assert.ok(effects.includes(`stock_balances ${store}/${sku} created`), JSON.stringify(effects));
    assert.ok(!effects.includes(`stock_balances ${store}/${exact} created`));
    // Each balance once: one it made and moved is created (not updated as well), one it found and moved is updated.
    const balances = effects.filter((effect) => effect.startsWith('stock_balances ')).sort();
    assert.deepEqual(balances, [`stock_balances ${store}/${fresh} created`, `stock_balances ${store}/${found} updated`, `stock_balances ${store}/${none} created`].sort());
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('without counted_at the count is of now: the balance becomes the counted quantity', async () => {
    const sku = await newSku(50);
    await sell(sku, 8);
    const started = Date.now();
    const response = await count({ items: [{ sku_id: sku, counted_quantity: 39 }] });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.deepEqual(response.body.items.map((line: CountItem) => [line.expected_quantity, line.variance, line.quantity_after]), [[42, -3, 39]]);
    assert.ok(Math.abs(new Date(response.body.counted_at).getTime() - started) < 60_000);
    assert.equal(await balance(sku), 39);
  });

  it('a counted_at a little ahead of the server is taken as now; further ahead, or more than 7 days ago, is 400 at /body/counted_at, nothing written', async () => {
    const sku = await newSku(20);
    const soon = new Date(Date.now() + 30_000).toISOString();
    const ahead = await count({ items: [{ sku_id: sku, counted_quantity: 18 }], counted_at: soon });
    assert.equal(ahead.status, 201, JSON.stringify(ahead.body));
    assert.ok(new Date(ahead.body.counted_at).getTime() <= Date.now() + 1_000, 'capped at the moment the balances were locked');
    assert.equal(await balance(sku), 18);

    const before = await rowsWritten();
    for (const [countedAt, message] of [
      [new Date(Date.now() + 10 * 60_000).toISOString(), /ahead/],
      [new Date(Date.now() - 8 * 86_400_000).toISOString(), /7 days/],
      ['2026-02-30T10:00:00Z', /date-time|moment/],
    ] as const) {
      const refused = await count({ items: [{ sku_id: sku, counted_quantity: 1 }], counted_at: countedAt });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'validation_failed');
      assert.equal(refused.body.errors[0].path, '/body/counted_at');
      assert.match(refused.body.errors[0].message, message);
    }
    assert.deepEqual(await rowsWritten(), before);
  });

  it('counting less than was sold since counted_at is 409 insufficient_stock with the lines, nothing written', async () => {
    const sku = await newSku(10);
    const other = await newSku(5);
    const countedAt = await dbNow();
    await sell(sku, 6); // after counted_at: 4 left
    const before = await rowsWritten();
    // 3 on the shelf at counted_at (expected 10): −7 applied to 4 would be −3.
    const response = await count({ items: [{ sku_id: other, counted_quantity: 9 }, { sku_id: sku, counted_quantity: 3 }], counted_at: countedAt });
    assert.equal(response.status, 409, JSON.stringify(response.body));
    assert.equal(response.body.code, 'insufficient_stock');
    assert.deepEqual(response.body.shortages, [{ sku_id: sku, requested: 7, available: 4 }]);
    assert.deepEqual(response.body.lines, [{ sku_id: sku, counted_quantity: 3, expected_quantity: 10, variance: -7, available: 4 }]);
    assert.deepEqual(await rowsWritten(), before);
    assert.deepEqual([await balance(sku), await balance(other)], [4, 5]);
  });

  it('refuses bad lines with a problem at their path and writes nothing: unknown SKU, a SKU twice, a piece-tracked SKU, bad quantities', async () => {
    const sku = await newSku(5);
    const unknown = randomUUID();
    const before = await rowsWritten();
    const cases: Array<[unknown, number, string, string]> = [
      [{ items: [{ sku_id: sku, counted_quantity: 1 }, { sku_id: unknown, counted_quantity: 1 }] }, 400, 'validation_failed', '/body/items/1/sku_id'],
      [{ items: [{ sku_id: sku, counted_quantity: 1 }, { sku_id: sku, counted_quantity: 2 }] }, 400, 'validation_failed', '/body/items/1/sku_id'],
      [{ items: [{ sku_id: sku, counted_quantity: 1 }, { sku_id: sku.toUpperCase(), counted_quantity: 2 }] }, 400, 'validation_failed', '/body/items/1/sku_id'],
      [{ items: [{ sku_id: sku, counted_quantity: 1 }, { sku_id: rolls, counted_quantity: 1000 }] }, 422, 'unprocessable', '/body/items/1/sku_id'],
      [{ items: [{ sku_id: sku, counted_quantity: -1 }] }, 400, 'validation_failed', '/body/items/0/counted_quantity'],
      [{ items: [{ sku_id: sku, counted_quantity: 1.5 }] }, 400, 'validation_failed', '/body/items/0/counted_quantity'],
      [{ items: [] }, 400, 'validation_failed', '/body/items'],
      [{ items: [{ sku_id: sku, counted_quantity: 1 }], extra: true }, 400, 'validation_failed', '/body'],
    ];
    for (const [body, status, code, path] of cases) {
      const response = await count(body);
      assert.equal(response.status, status, `${JSON.stringify(body)}: ${JSON.stringify(response.body)}`);
      assert.equal(response.body.code, code);
      assert.ok(
        (response.body.errors as Array<{ path: string }>).some((error) => error.path === path || error.path.startsWith(path)),
        `${JSON.stringify(body)}: ${JSON.stringify(response.body.errors)}`,
      );
    }
    assert.deepEqual(await rowsWritten(), before);
    assert.equal(await balance(sku), 5);
  });

  it('a store outside the token\'s stores, or not the tenant\'s, is 404; a cashier may not count (403)', async () => {
    const sku = await newSku(5);
    const scoped = t.client((await owner.post('/v1/tokens', { name: 'SC2 manager', role: 'manager', store_ids: [otherStore] })).body.token);
    const cashier = t.client((await owner.post('/v1/tokens', { name: 'till', role: 'cashier' })).body.token);
    const before = await rowsWritten();
    const outside = await count({ items: [{ sku_id: sku, counted_quantity: 1 }] }, randomUUID(), scoped);
    assert.equal(outside.status, 404, JSON.stringify(outside.body));
    const unknownStore = await count({ items: [{ sku_id: sku, counted_quantity: 1 }] }, randomUUID(), owner, randomUUID());
    assert.equal(unknownStore.status, 404, JSON.stringify(unknownStore.body));
    const forbidden = await count({ items: [{ sku_id: sku, counted_quantity: 1 }] }, randomUUID(), cashier);
    assert.equal(forbidden.status, 403, JSON.stringify(forbidden.body));
    assert.equal((await scoped.get(`/v1/stores/${store}/stock/counts`)).status, 404);
    assert.deepEqual(await rowsWritten(), before);
    // The scoped manager counts its own store.
    const own = await newSku(3, otherStore);
    const counted = await count({ items: [{ sku_id: own, counted_quantity: 2 }] }, randomUUID(), scoped, otherStore);
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    assert.equal((await scoped.get(`/v1/stores/${otherStore}/stock/counts/${counted.body.id}`)).status, 200);
    assert.equal((await scoped.get(`/v1/stores/${store}/stock/counts/${counted.body.id}`)).status, 404);
    assert.equal((await owner.get(`/v1/stores/${store}/stock/counts/${counted.body.id}`)).status, 404, 'a count is found under its own store only');
  });

  it('is idempotent by Idempotency-Key: the same count again replays its answer and moves nothing; another body under the key is 422', async () => {
    const sku = await newSku(30);
    const key = randomUUID();
    const body = { items: [{ sku_id: sku, counted_quantity: 25 }] };
    const first = await count(body, key);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const before = await rowsWritten();
    const again = await count(body, key);
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    const other = await count({ items: [{ sku_id: sku, counted_quantity: 24 }] }, key);
    assert.equal(other.status, 422);
    assert.deepEqual(await rowsWritten(), before);
    assert.equal(await balance(sku), 25);
  });

  it('an older count after a later one is 409 conflict; an earlier count posted after a later counted_at is not applied twice', async () => {
    const sku = await newSku(100);
    const t1 = await dbNow();
    await sell(sku, 10); // between t1 and t2
    const t2 = await dbNow();
    await sell(sku, 5); // after t2
    // The shelf at t1 held 96 (4 missing); the count is posted only now.
    const first = await count({ items: [{ sku_id: sku, counted_quantity: 96 }], counted_at: t1 });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.deepEqual(first.body.items.map((line: CountItem) => [line.expected_quantity, line.variance, line.quantity_after]), [[100, -4, 81]]);
    // The count at t2 saw the shelf with those 4 missing already: 86 is what the records say, counting it.
    const second = await count({ items: [{ sku_id: sku, counted_quantity: 86 }], counted_at: t2 });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    assert.deepEqual(second.body.items.map((line: CountItem) => [line.expected_quantity, line.variance, line.quantity_after]), [[86, 0, 81]]);
    assert.equal(await balance(sku), 81);

    const before = await rowsWritten();
    // (the SKU's id in capitals too: the problem still points at its line)
    for (const [countedAt, named] of [[t1, sku], [t2, sku], [t2, sku.toUpperCase()]] as const) {
      const older = await count({ items: [{ sku_id: named, counted_quantity: 50 }], counted_at: countedAt });
      assert.equal(older.status, 409, JSON.stringify(older.body));
      assert.equal(older.body.code, 'conflict');
      assert.deepEqual(older.body.later_counts.map((later: { sku_id: string; count_id: string }) => [later.sku_id, later.count_id]), [[sku, second.body.id]]);
      assert.equal(older.body.errors[0].path, '/body/items/0/sku_id');
    }
    assert.deepEqual(await rowsWritten(), before);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a count whose stock at counted_at comes out below 0 (an earlier count found less than the ledger then sold) is 409 conflict, nothing written', async () => {
    const sku = await newSku(5);
    const t1 = await dbNow();
    await sell(sku, 3); // the ledger: 2 left
    const t2 = await dbNow();
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] })).status, 201); // 12
    // The shelf held none at t1 (5 missing), posted only now: 12 − 5 = 7.
    const first = await count({ items: [{ sku_id: sku, counted_quantity: 0 }], counted_at: t1 });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.deepEqual(first.body.items.map((line: CountItem) => [line.expected_quantity, line.variance, line.quantity_after]), [[5, -5, 7]]);
    // At t2 the records say 2 − 5 = −3: no stock the count can be measured against.
    const before = await rowsWritten();
    for (const named of [sku, sku.toUpperCase()]) {
      const second = await count({ items: [{ sku_id: named, counted_quantity: 1 }], counted_at: t2 });
      assert.equal(second.status, 409, JSON.stringify(second.body));
      assert.equal(second.body.code, 'conflict');
      assert.equal(second.body.errors[0].path, '/body/items/0/sku_id');
      assert.deepEqual(second.body.lines, [{ sku_id: sku, expected_quantity: -3 }]);
    }
    assert.deepEqual(await rowsWritten(), before);
    assert.equal(await balance(sku), 7);
    // Counted now instead, it is taken.
    const now = await count({ items: [{ sku_id: sku, counted_quantity: 6 }] });
    assert.equal(now.status, 201, JSON.stringify(now.body));
    assert.equal(await balance(sku), 6);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('lists a store\'s counts newest first, paged like every list', async () => {
    const { owner: fresh, tenantId: freshTenant } = await t.newTenant();
    const shop = (await fresh.post('/v1/stores', { code: 'L1', name: 'Listed' })).body.id;
    const sku = (await fresh.post('/v1/skus', { code: 'L', name: 'Listed', unit: 'piece', price: 1 })).body.id;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await fresh.post(`/v1/stores/${shop}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: i }], reference: `round ${i}` });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      ids.push(response.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: Array<{ id: string; items: CountItem[] }>; next_cursor: string | null } } = await fresh.get(
        `/v1/stores/${shop}/stock/counts?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(page.status, 200);
      assert.ok(page.body.items.length <= 2);
      for (const item of page.body.items) {
        seen.push(item.id);
        assert.equal(item.items.length, 1);
      }
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    assert.deepEqual(seen, [...ids].reverse());
    const foreignCursor = await fresh.get(`/v1/stores/${shop}/stock/counts?cursor=abc`);
    assert.equal(foreignCursor.status, 400);
    assert.deepEqual(await integrityFindings(t.admin, freshTenant), []);
  });

  it('concurrent sales while counts are posted: the balance ends at the latest count less what was sold after its counted_at, the ledger sums to it, never negative', async () => {
    const sku = await newSku(5_000);
    const sales = 120;
    const quantities = Array.from({ length: sales }, (_, i) => 1 + (i % 3));
    let started = 0;
    /** Counts sent among the sales: at 20, one of a moment read between sales; then counts of "now" (no counted_at). */
    const counts: Array<Promise<{ status: number; body: any }>> = [];
    const countAt: Record<number, { counted: number; at: 'moment' | 'now' }> = {
      20: { counted: 4_900, at: 'moment' },
      45: { counted: 4_850, at: 'now' },
      70: { counted: 4_800, at: 'now' },
      95: { counted: 4_750, at: 'now' },
    };
    const sale = async (quantity: number) => {
      started += 1;
      const planned = countAt[started];
      if (planned) {
        const body = { items: [{ sku_id: sku, counted_quantity: planned.counted }], reference: `during sales ${started}` };
        counts.push(count(planned.at === 'moment' ? { ...body, counted_at: await dbNow() } : body));
      }
      return owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity, unit_price: 100 }] }, { idempotencyKey: randomUUID() });
    };
    // Twelve lanes of sales at once; the counts go in among them.
    const lanes = Array.from({ length: 12 }, (_, lane) =>
      (async () => {
        const answers = [];
        for (let i = lane; i < sales; i += 12) answers.push(await sale(quantities[i]!));
        return answers;
      })(),
    );
    const saleAnswers = (await Promise.all(lanes)).flat();
    const countAnswers = await Promise.all(counts);
    assert.ok(saleAnswers.every((answer) => answer.status === 201), JSON.stringify(saleAnswers.find((answer) => answer.status !== 201)?.body));
    assert.equal(countAnswers.length, 4);
    // A count of now is always applied (its counted_at is when it held the lock: later than any recorded);
    // the one of a past moment is refused only if a later one was recorded first.
    for (const answer of countAnswers.slice(1)) assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.ok([201, 409].includes(countAnswers[0]!.status), JSON.stringify(countAnswers[0]!.body));
    if (countAnswers[0]!.status === 409) assert.equal(countAnswers[0]!.body.code, 'conflict');
    const applied = countAnswers.filter((answer) => answer.status === 201).map((answer) => answer.body as { counted_at_exact: string; items: CountItem[] });
    const latest = applied.reduce((last, answer) => (answer.counted_at_exact > last.counted_at_exact ? answer : last));

    // From the rows left behind.
    const ledger = (
      await t.admin.query(
        `SELECT kind, quantity_change::int AS change, quantity_after::int AS after, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
         FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 ORDER BY id`,
        [tenantId, store, sku],
      )
    ).rows as Array<{ kind: string; change: number; after: number; at: string }>;
    const soldAfter = -ledger.filter((row) => row.kind === 'sale' && row.at > latest.counted_at_exact).reduce((sum, row) => sum + row.change, 0);
    const soldBefore = -ledger.filter((row) => row.kind === 'sale' && row.at <= latest.counted_at_exact).reduce((sum, row) => sum + row.change, 0);
    assert.ok(soldAfter > 0 && soldBefore > 0, `the count fell among the sales (${soldBefore} sold before it, ${soldAfter} after)`);
    const final = await balance(sku);
    assert.equal(final, latest.items[0]!.counted_quantity - soldAfter, JSON.stringify({ soldAfter, latest }));
    assert.equal(ledger.reduce((sum, row) => sum + row.change, 0), final);
    assert.equal(ledger.filter((row) => row.kind === 'sale').length, sales);
    let running = 0;
    for (const row of ledger) {
      running += row.change;
      assert.equal(row.after, running);
      assert.ok(row.after >= 0);
    }
    // Every applied count's expected quantity is what the ledger held at its
    // counted_at (stock_count_matches_ledger reads it again from the rows).
    const stored = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_count_lines WHERE tenant_id = $1 AND sku_id = $2`, [tenantId, sku])).rows[0].n;
    assert.equal(stored, applied.length);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});

/**
 * stock_count_matches_ledger against corrupted rows: each corruption leaves
 * every balance equal to its ledger (the other stock checks stay quiet), so
 * stock_count_matches_ledger, and only it, reports it.
 */
describe('the integrity of stock counts: stock_count_matches_ledger', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'CI', name: 'Count integrity' })).body.id;
  });
  after(() => t.close());

  const stocked = async (quantity: number) => {
    const sku = (await owner.post('/v1/skus', { code: `I-${randomUUID().slice(0, 8)}`, name: 'thing', unit: 'piece', price: 100 })).body.id as string;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity }] })).status, 201);
    return sku;
  };
  const counted = async (sku: string, quantity: number) => {
    const response = await owner.post(`/v1/stores/${store}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: quantity }] }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; op_id: string; items: CountItem[] };
  };
  const newFindings = (corrupt: () => Promise<void>) => findingsAfter(t.admin, tenantId, corrupt);

  it('clean counts are not reported', async () => {
    const sku = await stocked(10);
    await counted(sku, 8);
    await counted(sku, 8);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a line whose variance is not its ledger row\'s change is reported', async () => {
    const sku = await stocked(10);
    const count = await counted(sku, 7); // −3
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE stock_count_lines SET counted_quantity = 6, variance = -4 WHERE tenant_id = $1 AND count_id = $2`, [tenantId, count.id]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', count.id]]);
  });

  it('a line whose expected quantity is not the stock at counted_at is reported', async () => {
    const sku = await stocked(10);
    const count = await counted(sku, 12); // +2
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE stock_count_lines SET expected_quantity = 11, counted_quantity = 13 WHERE tenant_id = $1 AND count_id = $2`, [tenantId, count.id]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', count.id]]);
    assert.equal((found[0]!.detail as { lines_off: Array<{ ledger_at_counted_at: number }> }).lines_off[0]!.ledger_at_counted_at, 10);
  });

  it('a variance with no ledger row, and a ledger row for a variance of 0, are reported', async () => {
    const sku = await stocked(10);
    const moved = await counted(sku, 9); // −1
    const ledgerId = moved.items[0]!.ledger_id!;
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        // The row gone (the line's ledger_id left dangling: foreign keys are triggers, off here)
        // and the balance as if it had never moved: the stock checks stay quiet.
        [`DELETE FROM stock_ledger WHERE tenant_id = $1 AND id = $2`, [tenantId, ledgerId]],
        [`UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, sku]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', moved.id]]);

    const other = await stocked(5);
    const still = await counted(other, 5); // variance 0
    const more = await newFindings(() =>
      withTriggersOff(t.admin, [
        [
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind) VALUES ($1, $2, $3, $4, 1, 6, 'count')`,
          [tenantId, store, other, still.op_id],
        ],
        [`UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, other]],
      ]),
    );
    assert.deepEqual(more.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', still.id]]);
  });

  it('a count ledger row with no count behind it, and a count without lines, are reported', async () => {
    const sku = await stocked(10);
    const count = await counted(sku, 4); // −6
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`DELETE FROM stock_count_lines WHERE tenant_id = $1 AND count_id = $2`, [tenantId, count.id]],
        [`DELETE FROM stock_counts WHERE tenant_id = $1 AND id = $2`, [tenantId, count.id]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', `op:${count.op_id}`]]);

    const other = await stocked(3);
    const bare = await counted(other, 3);
    const more = await newFindings(() => withTriggersOff(t.admin, [[`DELETE FROM stock_count_lines WHERE tenant_id = $1 AND count_id = $2`, [tenantId, bare.id]]]));
    assert.deepEqual(more.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', bare.id]]);
  });
});
