import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { nodesOf, planOf } from '../../test/support/plans.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';
import { listStock } from './queries.js';
import { stockAsOf } from './stockAsOf.js';
import { encodeCursor, listAt } from '../http/schemas.js';

describe('GET /v1/stores/{store_id}/stock: paged like every list', () => {
  let t: TestApp;
  let owner: ApiClient;
  let storeId: string;
  let skus: string[];

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    storeId = await givenStore(owner, 'SL');
    skus = [];
    for (let i = 0; i < 7; i++) skus.push(await givenSku(owner, `SL-${i}`, 'piece'));
    await givenStock(owner, storeId, skus.map((sku, i) => ({ sku_id: sku, quantity: i + 1 })));
    skus.sort();
  });
  after(() => t.close());

  async function walk(query: string): Promise<{ pages: number; ids: string[] }> {
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response: { status: number; body: { items: Array<{ sku_id: string }>; next_cursor: string | null } } = await owner.get(
        `/v1/stores/${storeId}/stock?${query}${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(response.status, 200, JSON.stringify(response.body));
      ids.push(...response.body.items.map((item) => item.sku_id));
      cursor = response.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 20);
    return { pages, ids };
  }

  it('without limit or cursor: the first page of 50 (here every SKU, 7) in SKU order, next_cursor null', async () => {
    const response = await owner.get(`/v1/stores/${storeId}/stock`);
    assert.equal(response.status, 200);
    assert.deepEqual(response.body.items.map((item: { sku_id: string }) => item.sku_id), skus);
    assert.equal(response.body.next_cursor, null);
  });

  it('with a limit: pages in SKU order, every SKU exactly once, the last page ends the list — now and as of a moment', async () => {
    assert.deepEqual(await walk('limit=3'), { pages: 3, ids: skus });
    assert.deepEqual(await walk(`limit=2&as_of=${encodeURIComponent(new Date().toISOString())}`), { pages: 4, ids: skus });
    assert.deepEqual(await walk('limit=7'), { pages: 1, ids: skus });
  });

  it('a limit outside 1–500 or a cursor not made by this list is 400', async () => {
    for (const query of ['limit=0', 'limit=501', 'cursor=bm90LWEtY3Vyc29y', `cursor=${encodeCursor({ sku_id: "x' OR 1=1" }, listAt(`/v1/stores/${storeId}/stock`))}`]) {
      const response = await owner.get(`/v1/stores/${storeId}/stock?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal(response.body.code, 'validation_failed');
    }
  });
});

describe('GET /v1/stores/{store_id}/stock: paging rules', () => {
  let t: TestApp;
  let owner: ApiClient;
  let storeId: string;
  let otherStoreId: string;
  let skus: string[];

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    storeId = await givenStore(owner, 'PR');
    otherStoreId = await givenStore(owner, 'PR-OTHER');
    skus = [];
    for (let i = 0; i < 60; i++) skus.push(await givenSku(owner, `PR-${i}`, 'piece'));
    await givenStock(owner, storeId, skus.map((sku, i) => ({ sku_id: sku, quantity: 100 + i })));
    await givenStock(owner, otherStoreId, [{ sku_id: skus[0]!, quantity: 1 }]);
    skus.sort();
  });
  after(() => t.close());

  it('a cursor without a limit pages by the default 50 (a cursor comes from a paged answer); a last page that is full has no next_cursor', async () => {
    const first = await owner.get(`/v1/stores/${storeId}/stock?limit=5`);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body.items.map((item: { sku_id: string }) => item.sku_id), skus.slice(0, 5));
    const rest = await owner.get(`/v1/stores/${storeId}/stock?cursor=${first.body.next_cursor}`);
    assert.equal(rest.status, 200);
    assert.deepEqual(rest.body.items.map((item: { sku_id: string }) => item.sku_id), skus.slice(5, 55));
    assert.notEqual(rest.body.next_cursor, null);
    const last = await owner.get(`/v1/stores/${storeId}/stock?limit=500&cursor=${rest.body.next_cursor}`);
    assert.deepEqual(last.body.items.map((item: { sku_id: string }) => item.sku_id), skus.slice(55));
    assert.equal(last.body.next_cursor, null);
    // A full last page: its cursor is not given (no more), so no empty page is needed.
    const exact = await owner.get(`/v1/stores/${storeId}/stock?limit=60`);
    assert.equal(exact.body.items.length, 60);
    assert.equal(exact.body.next_cursor, null);
  });

  it('every bad limit or cursor, and an unknown query parameter, is a problem+json 400 naming the parameter', async () => {
    const skusCursor = (await owner.get('/v1/skus?limit=1')).body.next_cursor as string;
    const stockCursor = (await owner.get(`/v1/stores/${storeId}/stock?limit=1`)).body.next_cursor as string;
    const cases: Array<[string, string]> = [
      ['limit=0', '/querystring/limit'],
      ['limit=501', '/querystring/limit'],
      ['limit=-1', '/querystring/limit'],
      ['limit=1.5', '/querystring/limit'],
      ['limit=ten', '/querystring/limit'],
      ['limit=', '/querystring/limit'],
      ['cursor=', '/querystring/cursor'],
      ['cursor=%7B%7D', '/querystring/cursor'],
      [`cursor=${skusCursor}`, '/querystring/cursor'],
      [`cursor=${stockCursor}A`, '/querystring/cursor'],
      [`cursor=${stockCursor}=`, '/querystring/cursor'],
      [`cursor=${encodeCursor({ sku_id: skus[0], extra: 1 }, listAt(`/v1/stores/${storeId}/stock`))}`, '/querystring/cursor'],
      [`cursor=${encodeCursor({ sku_id: 'not-a-uuid' }, listAt(`/v1/stores/${storeId}/stock`))}`, '/querystring/cursor'],
      [`cursor=${Buffer.from(JSON.stringify({ sku_id: skus[0] })).toString('base64url')}`, '/querystring/cursor'],
      [`limit=5&cursor=${'A'.repeat(501)}`, '/querystring/cursor'],
      ['sku_id=' + skus[0], '/querystring'],
      ['page=2', '/querystring'],
      ['offset=10&limit=5', '/querystring'],
    ];
    for (const [query, path] of cases) {
      const response = await owner.get(`/v1/stores/${storeId}/stock?${query}`);
      assert.equal(response.status, 400, `${query}: ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/, query);
      assert.equal(response.body.code, 'validation_failed', query);
      assert.ok(
        (response.body.errors as Array<{ path: string }>).some((error) => error.path.startsWith(path)),
        `${query}: ${JSON.stringify(response.body.errors)}`,
      );
    }
    // The cursor of this list, as it wrote it, still pages.
    assert.equal((await owner.get(`/v1/stores/${storeId}/stock?limit=5&cursor=${stockCursor}`)).status, 200);
  });

  it("a token limited to another store gets 404 for this store's stock, paged or not, with a cursor of this store's list; its own store is listed, and refuses the other store's cursor", async () => {
    const other = await givenToken(t, owner, 'cashier', [otherStoreId]);
    const cursor = (await owner.get(`/v1/stores/${storeId}/stock?limit=2`)).body.next_cursor as string;
    for (const query of ['', '?limit=2', `?limit=2&cursor=${cursor}`, `?cursor=${cursor}`, `?limit=2&as_of=${encodeURIComponent(new Date().toISOString())}`]) {
      const response = await other.get(`/v1/stores/${storeId}/stock${query}`);
      assert.equal(response.status, 404, query);
      assert.equal(response.body.code, 'not_found', query);
    }
    const own = await other.get(`/v1/stores/${otherStoreId}/stock?limit=2`);
    assert.equal(own.status, 200);
    assert.deepEqual(own.body, { items: [{ sku_id: own.body.items[0].sku_id, quantity: 1, updated_at: own.body.items[0].updated_at }], next_cursor: null });
    // A cursor is of the list that wrote it: another store's stock is another list, and refuses it (400 at the cursor).
    const ownFromCursor = await other.get(`/v1/stores/${otherStoreId}/stock?limit=2&cursor=${cursor}`);
    assert.equal(ownFromCursor.status, 400);
    assert.equal(ownFromCursor.body.errors[0].path, '/querystring/cursor');
  });
});

function encodeCursorOf(storeId: string, skuId: string): string {
  return encodeCursor({ sku_id: skuId }, listAt(`/v1/stores/${storeId}/stock`));
}

describe('GET /v1/stores/{store_id}/stock: a page of a big store reads that page, not the store', () => {
  const SKUS = 20_000;
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let skus: string[];

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'BIG');
    const otherStore = await givenStore(owner, 'BIG-2');
    const first = await givenSku(owner, 'BIG-0', 'piece');
    // The catalogue and balances written directly (20,000 SKUs through the API would take minutes):
    // SKUs like the first one, a balance of each in both stores, and the ledger row behind it.
    await t.admin.query(
      `INSERT INTO skus (tenant_id, id, code, name, unit, price, op_id)
       SELECT s.tenant_id, gen_random_uuid(), 'BIG-' || n, 'SKU ' || n, s.unit, s.price, s.op_id
       FROM skus s, generate_series(1, $3::int - 1) n WHERE s.tenant_id = $1 AND s.id = $2`,
      [tenantId, first, SKUS],
    );
    await t.admin.query(
      `INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity)
       SELECT tenant_id, st.id, s.id, 8 FROM skus s CROSS JOIN (VALUES ($2::uuid), ($3::uuid)) st(id) WHERE s.tenant_id = $1`,
      [tenantId, storeId, otherStore],
    );
    // Each balance's history: 5 received three days ago (in the snapshot of the day before yesterday), 3 an hour ago.
    await t.admin.query(
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
       SELECT b.tenant_id, b.store_id, b.sku_id, s.op_id, h.change, h.after, 'receipt', now() - h.ago
       FROM stock_balances b JOIN skus s ON s.tenant_id = b.tenant_id AND s.id = $2
       CROSS JOIN (VALUES (5, 5, interval '3 days'), (3, 8, interval '1 hour')) h(change, after, ago)
       WHERE b.tenant_id = $1`,
      [tenantId, first],
    );
    await t.admin.query(
      `INSERT INTO stock_snapshots (tenant_id, store_id, sku_id, snapshot_date, quantity, op_id)
       SELECT b.tenant_id, b.store_id, b.sku_id, (now() AT TIME ZONE 'UTC')::date - 2, 5, s.op_id
       FROM stock_balances b JOIN skus s ON s.tenant_id = b.tenant_id AND s.id = $2 WHERE b.tenant_id = $1`,
      [tenantId, first],
    );
    await t.admin.query('ANALYZE skus, stock_balances, stock_ledger, stock_snapshots');
    skus = (await t.admin.query(`SELECT sku_id FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 ORDER BY sku_id`, [tenantId, storeId])).rows.map(
      (row: { sku_id: string }) => row.sku_id,
    );
    assert.equal(skus.length, SKUS);
  });
  after(() => t.close());

  /**
   * The plan of exactly the query the code sends, with its values, run (EXPLAIN ANALYZE) as the
   * app role in the tenant. `auto`: as the service runs it (an unnamed statement, planned with its
   * values). `generic`: planned without them, as a prepared statement reused by a driver or a
   * pooler, or a server set to plan_cache_mode = force_generic_plan, runs it — the page must
   * still be a range of the index then.
   */
  const planOfPage = (read: 'now' | 'as_of', after: string | undefined, limit: number, plan: 'auto' | 'generic') =>
    planOf(t.db, tenantId, (tx) => (read === 'now' ? listStock(tx, tenantId, storeId, { after, limit }) : stockAsOf(tx, tenantId, storeId, new Date().toISOString(), { after, limit })), plan);


  for (const [read, plan] of [['now', 'auto'], ['as_of', 'auto'], ['now', 'generic'], ['as_of', 'generic']] as const) {
    it(`${read}, ${plan} plan: the first, a middle and the last page of ${SKUS} SKUs are an index range scan of the page's rows, without a sort`, async () => {
      for (const after of [undefined, skus[SKUS / 2], skus[SKUS - 3]]) {
        const nodes = await planOfPage(read, after, 51, plan);
        const label = `${read} ${plan} after ${after ?? 'nothing'}: ${JSON.stringify(nodes.map((node) => [node['Node Type'], node['Relation Name'], node['Index Name'], node['Index Cond']]))}`;
        const sorts = nodes.filter((node) => /Sort$/.test(node['Node Type']));
        assert.ok(!sorts.some((sort) => nodesOf(sort).some((node) => node['Relation Name'] === 'stock_balances')), `the balances are sorted: ${label}`);
        const scans = nodes.filter((node) => node['Relation Name'] === 'stock_balances');
        assert.equal(scans.length, 1, label);
        const scan = scans[0]!;
        assert.match(scan['Node Type'], /^Index (Only )?Scan$/, label);
        assert.equal(scan['Index Name'], 'stock_balances_pkey', label);
        if (after !== undefined) assert.match(scan['Index Cond'] ?? '', /sku_id > /, label);
        const read_ = (scan['Actual Rows'] ?? 0) + (scan['Rows Removed by Filter'] ?? 0);
        assert.ok(read_ <= 52, `${label}: read ${read_} balances for a page of 51`);
        for (const other of nodes.filter((node) => node['Relation Name'] === 'stock_ledger' || node['Relation Name'] === 'stock_snapshots')) {
          assert.match(other['Node Type'], /^Index (Only )?Scan$/, label);
          assert.ok((other['Actual Loops'] ?? 0) <= 52, `${label}: ${other['Relation Name']} looked up ${other['Actual Loops']} times for a page of 51`);
        }
      }
    });
  }

  it(`walking the ${SKUS} SKUs with ?limit=500 answers each once, in order, in ${SKUS / 500} pages; without a limit, the first 50`, async () => {
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response: { status: number; body: { items: Array<{ sku_id: string }>; next_cursor: string | null } } = await owner.get(
        `/v1/stores/${storeId}/stock?limit=500${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(response.status, 200);
      ids.push(...response.body.items.map((item) => item.sku_id));
      cursor = response.body.next_cursor;
      pages++;
    } while (cursor !== null && pages <= SKUS / 500);
    assert.equal(pages, SKUS / 500);
    assert.deepEqual(ids, skus);
    const first = await owner.get(`/v1/stores/${storeId}/stock`);
    assert.deepEqual(first.body.items.map((item: { sku_id: string }) => item.sku_id), skus.slice(0, 50));
    assert.notEqual(first.body.next_cursor, null);
    const asOf = await owner.get(`/v1/stores/${storeId}/stock?limit=500&cursor=${encodeCursorOf(storeId, skus[SKUS - 501]!)}&as_of=${encodeURIComponent(new Date().toISOString())}`);
    assert.equal(asOf.status, 200);
    assert.deepEqual(asOf.body.items, skus.slice(SKUS - 500).map((sku_id) => ({ sku_id, quantity: 8 })));
    assert.equal(asOf.body.next_cursor, null);
  });
});

describe('GET /v1/stores/{store_id}/stock: walking the pages while sales and receipts move the stock', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let skus: string[];

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'CW');
    skus = [];
    for (let i = 0; i < 80; i++) skus.push(await givenSku(owner, `CW-${i}`, 'piece'));
    await givenStock(owner, storeId, skus.map((sku_id) => ({ sku_id, quantity: 1000 })));
    skus.sort();
  });
  after(() => t.close());

  type Page = { status: number; body: { items: Array<{ sku_id: string; quantity: number }>; next_cursor: string | null } };
  async function walk(query: string): Promise<Array<{ sku_id: string; quantity: number }>> {
    const items: Array<{ sku_id: string; quantity: number }> = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response: Page = await owner.get(`/v1/stores/${storeId}/stock?${query}${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.status, 200, JSON.stringify(response.body));
      items.push(...response.body.items.map(({ sku_id, quantity }) => ({ sku_id, quantity })));
      cursor = response.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 100);
    assert.equal(cursor, null, 'the walk ended');
    return items;
  }

  it('no SKU is skipped or repeated, in SKU order; a SKU first received during the walk appears at most once; as of a moment before, every page has that moment\'s quantities', async () => {
    const before = await walk('limit=500');
    assert.deepEqual(before, skus.map((sku_id) => ({ sku_id, quantity: 1000 })));
    const moment = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));

    const added: string[] = [];
    let stop = false;
    let sold = 0;
    let received = 0;
    const pick = () => skus[Math.floor(Math.random() * skus.length)]!;
    const seller = async () => {
      while (!stop) {
        const sku_id = pick();
        const response = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id, quantity: 1, unit_price: 100 }] });
        assert.equal(response.status, 201, JSON.stringify(response.body));
        sold++;
      }
    };
    const receiver = async () => {
      let n = 0;
      while (!stop) {
        const items = [{ sku_id: pick(), quantity: 2 }, { sku_id: pick(), quantity: 3 }].filter((item, i, all) => all.findIndex((other) => other.sku_id === item.sku_id) === i);
        // Now and then a SKU the store never had: its balance row is new, wherever it falls in SKU order.
        if (n++ % 3 === 0) {
          const sku = await givenSku(owner, `CW-NEW-${added.length}-${Math.random().toString(36).slice(2, 6)}`, 'piece');
          added.push(sku);
          items.push({ sku_id: sku, quantity: 7 });
        }
        const response = await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items });
        assert.equal(response.status, 201, JSON.stringify(response.body));
        received += items.filter((item) => skus.includes(item.sku_id)).reduce((sum, item) => sum + item.quantity, 0);
      }
    };
    const writers = [seller(), seller(), seller(), receiver(), receiver()];
    let walks: Array<{ query: string; items: Array<{ sku_id: string; quantity: number }> }>;
    try {
      walks = [];
      for (let round = 0; round < 3; round++) {
        const queries = ['limit=3', 'limit=7', `limit=4&as_of=${encodeURIComponent(moment)}`, `limit=11&as_of=${encodeURIComponent(moment)}`];
        const results = await Promise.all(queries.map((query) => walk(query)));
        walks.push(...results.map((items, i) => ({ query: queries[i]!, items })));
      }
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    assert.ok(sold > 0 && received > 0 && added.length > 0, `writes happened during the walks: ${sold} sales, ${received} received, ${added.length} new SKUs`);

    for (const { query, items } of walks) {
      const ids = items.map((item) => item.sku_id);
      for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${query}: in SKU order, each once (${ids[i - 1]} then ${ids[i]})`);
      assert.deepEqual(ids.filter((id) => skus.includes(id)), skus, `${query}: every SKU the store had`);
      assert.ok(ids.every((id) => skus.includes(id) || added.includes(id)), `${query}: nothing else`);
      if (query.includes('as_of')) {
        // As of the moment before the writes: the quantities then, on every page; a SKU first received later had 0.
        assert.deepEqual(items.filter((item) => skus.includes(item.sku_id)), before, query);
        assert.ok(items.every((item) => skus.includes(item.sku_id) || item.quantity === 0), query);
      }
    }

    // The rows left behind: the list now is the balances, each balance its ledger, and the store's stock what was written.
    const now = await walk('limit=13');
    const { rows } = await t.admin.query(
      `SELECT b.sku_id, b.quantity::int AS quantity, (SELECT sum(quantity_change)::int FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id) AS ledger
       FROM stock_balances b WHERE b.tenant_id = $1 AND b.store_id = $2 ORDER BY b.sku_id`,
      [tenantId, storeId],
    );
    assert.deepEqual(now, rows.map((row: { sku_id: string; quantity: number }) => ({ sku_id: row.sku_id, quantity: row.quantity })));
    for (const row of rows as Array<{ sku_id: string; quantity: number; ledger: number }>) assert.equal(row.quantity, row.ledger, row.sku_id);
    assert.equal(rows.length, skus.length + added.length);
    const ofOld = (rows as Array<{ sku_id: string; quantity: number }>).filter((row) => skus.includes(row.sku_id)).reduce((sum, row) => sum + row.quantity, 0);
    assert.equal(ofOld, skus.length * 1000 - sold + received);
  });
});
