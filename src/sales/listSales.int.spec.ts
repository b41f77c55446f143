import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from './testkit.js';

/**
 * GET /v1/stores/{store_id}/sales: a store's sales, newest first (created_at,
 * then receipt number), each as GET /v1/sales/{id} answers it; by receipt
 * number, or recorded within [from, to); cursor pages like every list.
 */
describe('GET /v1/stores/{store_id}/sales', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let otherStore: string;
  let milk: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = await givenStore(owner, 'L1');
    otherStore = await givenStore(owner, 'L2');
    milk = await givenSku(owner, 'MILK', 'piece', 120);
    await givenStock(owner, store, [{ sku_id: milk, quantity: 10_000 }]);
    await givenStock(owner, otherStore, [{ sku_id: milk, quantity: 10_000 }]);
  });
  after(() => t.close());

  const sell = (storeId = store, quantity = 1, client = owner) =>
    client.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: milk, quantity, unit_price: 120 }] }, { idempotencyKey: randomUUID() });

  /** The store's receipt numbers in the list's order, read from the table (created_at to the microsecond, then receipt number, newest first). */
  async function expectedOrder(storeId: string, where = 'true', values: unknown[] = []): Promise<number[]> {
    const { rows } = await t.admin.query(
      `SELECT receipt_number FROM sales WHERE tenant_id = $1 AND store_id = $2 AND ${where} ORDER BY created_at DESC, receipt_number DESC`,
      [tenantId, storeId, ...values],
    );
    return rows.map((row: { receipt_number: string }) => Number(row.receipt_number));
  }

  /** Every page of the list from the first; the receipt numbers in order. */
  async function walk(query: string, client = owner): Promise<{ receipts: number[]; pages: ApiResponse[] }> {
    const receipts: number[] = [];
    const pages: ApiResponse[] = [];
    let cursor: string | null = null;
    do {
      const page: ApiResponse = await client.get(`/v1/stores/${store}/sales?${[query, cursor === null ? '' : `cursor=${cursor}`].filter(Boolean).join('&')}`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      pages.push(page);
      receipts.push(...(page.body.items as Array<{ receipt_number: number }>).map((sale) => sale.receipt_number));
      cursor = page.body.next_cursor;
      assert.ok(pages.length <= 100, 'the walk ends');
    } while (cursor !== null);
    return { receipts, pages };
  }

  it('lists every sale once, newest first — sales written by one batch (one created_at) by receipt number — across pages of any size', async () => {
    // Given: sales one after another, and 40 sent at once (group commit writes them in batches sharing a created_at)
    for (let i = 0; i < 5; i++) assert.equal((await sell()).status, 201);
    const together = await Promise.all(Array.from({ length: 40 }, () => sell()));
    assert.ok(together.every((response) => response.status === 201));
    for (let i = 0; i < 5; i++) assert.equal((await sell()).status, 201);
    const shared = await t.admin.query(`SELECT count(DISTINCT created_at)::int AS moments FROM sales WHERE tenant_id = $1 AND store_id = $2`, [tenantId, store]);
    assert.ok(shared.rows[0].moments < 50, `some sales share a created_at (${shared.rows[0].moments} moments for 50 sales)`);
    const expected = await expectedOrder(store);
    assert.equal(expected.length, 50);
    // When / Then: walked with several page sizes, the same 50, in the table's order, each once
    for (const limit of [1, 3, 7, 50, 500]) {
      const { receipts, pages } = await walk(`limit=${limit}`);
      assert.deepEqual(receipts, expected, `limit ${limit}`);
      assert.ok(pages.slice(0, -1).every((page) => page.body.items.length === limit), `limit ${limit}: full pages`);
    }
    // Without a limit: 50 a page.
    const whole = await owner.get(`/v1/stores/${store}/sales`);
    assert.equal(whole.body.items.length, 50);
    assert.equal(whole.body.next_cursor, null);
  });

  it('each item is the sale as GET /v1/sales/{id} answers it, voided and returned ones included', async () => {
    // Given: a sale partly returned, and one voided
    const returned = (await sell(store, 3)).body;
    const back = await owner.post(`/v1/sales/${returned.id}/returns`, { items: [{ sku_id: milk, quantity: 1 }], reason: 'sour' });
    assert.equal(back.status, 201, JSON.stringify(back.body));
    const voided = (await sell(store, 2)).body;
    assert.equal((await owner.post(`/v1/sales/${voided.id}/void`, { reason: 'mistake' })).status, 200);
    // When
    const page = await owner.get(`/v1/stores/${store}/sales?limit=2`);
    // Then: newest first, each exactly its own GET
    assert.equal(page.status, 200, JSON.stringify(page.body));
    assert.deepEqual(page.body.items.map((sale: { id: string }) => sale.id), [voided.id, returned.id]);
    for (const item of page.body.items) assert.deepEqual(item, (await owner.get(`/v1/sales/${item.id}`)).body);
    assert.equal(page.body.items[0].status, 'voided');
    assert.equal(page.body.items[1].returned_total, 120);
    assert.equal(page.body.items[1].returns.length, 1);
  });

  it('?receipt_number= finds the sale of a paper receipt; a number not taken lists nothing', async () => {
    const sale = (await sell()).body;
    const found = await owner.get(`/v1/stores/${store}/sales?receipt_number=${sale.receipt_number}`);
    assert.equal(found.status, 200, JSON.stringify(found.body));
    assert.deepEqual(found.body, { items: [(await owner.get(`/v1/sales/${sale.id}`)).body], next_cursor: null });
    // The same number in another store is that store's own sale.
    const elsewhere = (await sell(otherStore)).body;
    const there = await owner.get(`/v1/stores/${otherStore}/sales?receipt_number=${elsewhere.receipt_number}`);
    assert.deepEqual(there.body.items.map((item: { id: string }) => item.id), [elsewhere.id]);
    const none = await owner.get(`/v1/stores/${store}/sales?receipt_number=999999`);
    assert.deepEqual(none.body, { items: [], next_cursor: null });
  });

  it('?from= and ?to= keep the sales recorded at or after from and before to (to the microsecond), paged with the same filters', async () => {
    // Given: three sales recorded on 2026-03-01 and two on 2026-03-02 (moved there, as if made those days)
    const made: Array<{ id: string; receipt_number: number }> = [];
    for (let i = 0; i < 5; i++) made.push((await sell()).body);
    const at = ['2026-03-01T08:00:00.000001Z', '2026-03-01T12:00:00Z', '2026-03-01T23:59:59.999999Z', '2026-03-02T00:00:00Z', '2026-03-02T09:00:00Z'];
    // created_at never changes (a trigger refuses it): moved with the triggers off, on this connection only.
    const client = await t.admin.connect();
    try {
      await client.query(`SET session_replication_role = replica`);
      for (const [index, sale] of made.entries()) {
        await client.query(`UPDATE sales SET created_at = $3 WHERE tenant_id = $1 AND id = $2`, [tenantId, sale.id, at[index]]);
      }
    } finally {
      await client.query(`SET session_replication_role = origin`);
      client.release();
    }
    // When: the first of March, in UTC and in another offset; then from the last microsecond of it
    const day = await walk(`from=${encodeURIComponent('2026-03-01T00:00:00Z')}&to=${encodeURIComponent('2026-03-02T00:00:00Z')}&limit=2`);
    const sameDay = await walk(`from=${encodeURIComponent('2026-03-01T01:00:00+01:00')}&to=${encodeURIComponent('2026-03-02T01:00:00+01:00')}`);
    const tail = await walk(`from=${encodeURIComponent('2026-03-01T23:59:59.999999Z')}&to=${encodeURIComponent('2026-03-02T09:00:00Z')}`);
    // Then
    const receipt = (index: number) => made[index]!.receipt_number;
    assert.deepEqual(day.receipts, [receipt(2), receipt(1), receipt(0)]);
    assert.deepEqual(sameDay.receipts, day.receipts);
    assert.deepEqual(tail.receipts, [receipt(3), receipt(2)]);
    assert.deepEqual(
      (await walk(`from=${encodeURIComponent('2026-03-01T00:00:00Z')}`)).receipts,
      await expectedOrder(store, `created_at >= '2026-03-01T00:00:00Z'`),
    );
  });

  it('?status=voided keeps the voided sales (a manager looking for the day\'s voids), ?status=completed the others; with from/to, receipt number and the cursor', async () => {
    // Given: six sales, two of them voided
    const made: Array<{ id: string; receipt_number: number }> = [];
    for (let i = 0; i < 6; i++) made.push((await sell()).body);
    for (const index of [1, 4]) assert.equal((await owner.post(`/v1/sales/${made[index]!.id}/void`, { reason: 'wrong item' })).status, 200);
    // When / Then: walked a page of one at a time, each list is the table's, in its order
    const voided = await walk('status=voided&limit=1');
    assert.deepEqual(voided.receipts, await expectedOrder(store, `status = 'voided'`));
    assert.ok(voided.receipts.includes(made[1]!.receipt_number) && voided.receipts.includes(made[4]!.receipt_number));
    assert.ok(voided.pages.every((page) => page.body.items.every((sale: { status: string }) => sale.status === 'voided')));
    const completed = await walk('status=completed&limit=7');
    assert.deepEqual(completed.receipts, await expectedOrder(store, `status = 'completed'`));
    assert.ok(!completed.receipts.includes(made[1]!.receipt_number));
    // With the other filters: from the first of the six on, and one receipt
    const since = (await t.admin.query(`SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM sales WHERE tenant_id = $1 AND id = $2`, [tenantId, made[0]!.id])).rows[0].at as string;
    assert.deepEqual((await walk(`status=voided&from=${encodeURIComponent(since)}&limit=1`)).receipts, [made[4]!.receipt_number, made[1]!.receipt_number]);
    assert.deepEqual((await walk(`status=completed&from=${encodeURIComponent(since)}`)).receipts, [5, 3, 2, 0].map((index) => made[index]!.receipt_number));
    assert.deepEqual((await walk(`status=voided&receipt_number=${made[4]!.receipt_number}`)).receipts, [made[4]!.receipt_number]);
    assert.deepEqual((await walk(`status=completed&receipt_number=${made[4]!.receipt_number}`)).receipts, []);
  });

  it('?customer_id= keeps a customer\'s purchases at this store (any letter case), with status and the cursor; a customer with none here, or no customer at all, lists nothing', async () => {
    // Given: two customers; Ann buys three times here (one voided) and once elsewhere, Bob only elsewhere
    const customer = async (name: string) => (await owner.post('/v1/parties', { kind: 'customer', name }, { idempotencyKey: randomUUID() })).body.id as string;
    const ann = await customer('Ann');
    const bob = await customer('Bob');
    const buy = async (customerId: string, storeId = store) => {
      const response = await owner.post(
        '/v1/sales',
        { store_id: storeId, payment_method: 'credit', customer_id: customerId, items: [{ sku_id: milk, quantity: 1, unit_price: 120 }] },
        { idempotencyKey: randomUUID() },
      );
      assert.equal(response.status, 201, JSON.stringify(response.body));
      return response.body as { id: string; receipt_number: number };
    };
    const anns = [await buy(ann), (await sell()).body, await buy(ann), await buy(ann)];
    await buy(ann, otherStore);
    await buy(bob, otherStore);
    assert.equal((await owner.post(`/v1/sales/${anns[2]!.id}/void`, { reason: 'returned at once' })).status, 200);
    // When / Then
    const all = await walk(`customer_id=${ann}&limit=1`);
    assert.deepEqual(all.receipts, [anns[3]!, anns[2]!, anns[0]!].map((sale) => sale.receipt_number));
    assert.deepEqual(all.receipts, await expectedOrder(store, `customer_id = $3`, [ann]));
    assert.deepEqual((await walk(`customer_id=${ann.toUpperCase()}`)).receipts, all.receipts);
    assert.deepEqual((await walk(`customer_id=${ann}&status=voided`)).receipts, [anns[2]!.receipt_number]);
    assert.deepEqual((await walk(`customer_id=${ann}&status=completed&limit=1`)).receipts, [anns[3]!.receipt_number, anns[0]!.receipt_number]);
    assert.deepEqual((await walk(`customer_id=${ann}&receipt_number=${anns[1]!.receipt_number}`)).receipts, []);
    // Bob bought only elsewhere; a made-up id is no customer: both an empty page, as ?sku_id= of GET /v1/pieces is
    for (const id of [bob, randomUUID()]) {
      const none = await owner.get(`/v1/stores/${store}/sales?customer_id=${id}`);
      assert.equal(none.status, 200, JSON.stringify(none.body));
      assert.deepEqual(none.body, { items: [], next_cursor: null });
    }
  });

  it('a sale synced from a till is listed by when it arrived, with its till time; a walk during sales lists no sale twice', async () => {
    // Given: a till's sale made yesterday, synced now
    const tillTime = new Date(Date.now() - 86_400_000).toISOString();
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: store, payment_method: 'cash', items: [{ sku_id: milk, quantity: 1, unit_price: 120 }], client_created_at: tillTime }],
    });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const first = await owner.get(`/v1/stores/${store}/sales?limit=1`);
    assert.equal(first.body.items[0].id, synced.body.results[0].body.id);
    assert.equal(first.body.items[0].source, 'offline');
    assert.equal(first.body.items[0].client_created_at, tillTime);
    // When: the list is walked while sales go on
    const before = await expectedOrder(store);
    const seen: number[] = [];
    let cursor: string | null = null;
    let extra = 0;
    do {
      const page: ApiResponse = await owner.get(`/v1/stores/${store}/sales?limit=9${cursor === null ? '' : `&cursor=${cursor}`}`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      seen.push(...page.body.items.map((sale: { receipt_number: number }) => sale.receipt_number));
      cursor = page.body.next_cursor;
      await Promise.all([sell(), sell()]);
      extra += 2;
    } while (cursor !== null);
    // Then: the sales there when it started, once each, in order; the new ones (newer than the first page) not
    assert.deepEqual(seen, before);
    assert.equal((await expectedOrder(store)).length, before.length + extra);
  });

  it('roles: owner, admin, manager and auditor list; a cashier and a field agent (who read a sale by its id) get 403', async () => {
    const sale = (await sell()).body;
    for (const role of ['admin', 'manager', 'auditor']) {
      const client = await givenToken(t, owner, role);
      const page = await client.get(`/v1/stores/${store}/sales?limit=1`);
      assert.equal(page.status, 200, `${role}: ${JSON.stringify(page.body)}`);
    }
    for (const role of ['cashier', 'field_agent']) {
      const client = await givenToken(t, owner, role);
      const page = await client.get(`/v1/stores/${store}/sales`);
      assert.equal(page.status, 403, `${role}: ${JSON.stringify(page.body)}`);
      assert.equal((await client.get(`/v1/sales/${sale.id}`)).status, 200, `${role} reads the sale by its id`);
    }
  });

  it('another store of the tenant (for a token limited to one), another tenant\'s store, a made-up one: 404 alike', async () => {
    const limited = await givenToken(t, owner, 'manager', [otherStore]);
    const stranger = (await t.newTenant()).owner;
    const madeUp = randomUUID();
    const refused = [await limited.get(`/v1/stores/${store}/sales`), await stranger.get(`/v1/stores/${store}/sales`), await owner.get(`/v1/stores/${madeUp}/sales`)];
    for (const response of refused) {
      assert.equal(response.status, 404, JSON.stringify(response.body));
      assert.equal(response.body.code, 'not_found');
    }
    assert.equal((await limited.get(`/v1/stores/${otherStore}/sales`)).status, 200);
  });

  it('bad queries are 400 at their parameter: from/to not a moment PostgreSQL reads, receipt number below 1, a status not completed or voided, a customer id not a UUID, a cursor of another list, an unknown parameter', async () => {
    const page = await owner.get(`/v1/stores/${store}/sales?limit=1`);
    const cursor = page.body.next_cursor as string;
    assert.ok(cursor);
    const cases: Array<[string, string]> = [
      [`from=yesterday`, '/querystring/from'],
      [`to=${encodeURIComponent('0000-01-01T00:00:00Z')}`, '/querystring/to'],
      [`from=${encodeURIComponent('2026-02-30T00:00:00Z')}`, '/querystring/from'],
      [`receipt_number=0`, '/querystring/receipt_number'],
      [`receipt_number=abc`, '/querystring/receipt_number'],
      [`limit=501`, '/querystring/limit'],
      [`status=foo`, '/querystring/status'],
      [`status=VOIDED`, '/querystring/status'],
      [`status=`, '/querystring/status'],
      [`customer_id=not-a-uuid`, '/querystring/customer_id'],
      [`customer_id=`, '/querystring/customer_id'],
      [`customer=${randomUUID()}`, '/querystring/customer'],
    ];
    for (const [query, path] of cases) {
      const response = await owner.get(`/v1/stores/${store}/sales?${query}`);
      assert.equal(response.status, 400, `${query}: ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/, query);
      assert.ok(
        (response.body.errors as Array<{ path: string }>).some((error) => error.path === path),
        `${query}: ${JSON.stringify(response.body.errors)}`,
      );
    }
    // The cursor of this store's list, sent to another store's list: 400, not a page of it.
    const crossed = await owner.get(`/v1/stores/${otherStore}/sales?cursor=${cursor}`);
    assert.equal(crossed.status, 400, JSON.stringify(crossed.body));
    assert.deepEqual(crossed.body.errors.map((error: { path: string }) => error.path), ['/querystring/cursor']);
  });
});
