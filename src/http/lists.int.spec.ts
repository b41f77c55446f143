import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { encodeCursor, listAt } from './schemas.js';

/**
 * Every list follows API.md's convention, the same way: `?limit=` (1–500,
 * default 50 with or without a cursor), `?cursor=` (only the list that wrote
 * it reads it), `{ items, next_cursor }`; a walk returns every item exactly
 * once, in the list's order, and ends with `next_cursor: null`. One table,
 * one walk per list; the rows a list reads are written with SQL (copies of
 * one made through the API) where they are not what is tested.
 */

interface ListCase {
  /** What the test reports. */
  name: string;
  /** The list's path (ids in lowercase) and any query it needs besides limit and cursor. */
  path: string;
  query?: string;
  /** The client that reads it (default: the owner). */
  as?: () => ApiClient;
  /** The identity of an item, to compare walks. */
  key: (item: Record<string, unknown>) => string;
  /** How many items the list holds (the fixture), and whether the order is checked against a sort of the keys. */
  count: number;
}

describe('every list: ?limit= (default 50, max 500), ?cursor= of that list only, { items, next_cursor }', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  const cases: ListCase[] = [];
  const MANY = 120;

  /**
   * Copies of one row: `count` more rows like the row of `table` with this
   * tenant and id, the columns in `overrides` given as SQL over the copy's
   * number `n` (the identity and generated columns left to their default).
   */
  async function copies(table: string, id: string | number, count: number, overrides: Record<string, string>, tenant = tenantId): Promise<void> {
    const { rows } = await t.admin.query(
      `SELECT column_name FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name = $1 AND is_generated = 'NEVER' AND NOT (is_identity = 'YES' AND identity_generation = 'ALWAYS')
       ORDER BY ordinal_position`,
      [table],
    );
    const columns = rows.map((row: { column_name: string }) => row.column_name);
    for (const name of Object.keys(overrides)) assert.ok(columns.includes(name), `${table}.${name}`);
    await t.admin.query(
      `INSERT INTO ${table} (${columns.map((c: string) => `"${c}"`).join(', ')})
       SELECT ${columns.map((c: string) => (overrides[c] !== undefined ? overrides[c] : `src."${c}"`)).join(', ')}
       FROM ${table} src, generate_series(1, $3::int) n WHERE src.tenant_id = $1 AND src.id = $2`,
      [tenant, id, count],
    );
  }

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    const store = await givenStore(owner, 'A-STORE');
    const otherStore = await givenStore(owner, 'B-STORE');
    const sku = await givenSku(owner, 'A-SKU', 'piece');
    const rollSku = (await owner.post('/v1/skus', { code: 'A-ROLL', name: 'Roll', unit: 'metre', price: 10, tracks_pieces: true })).body.id as string;
    await givenStock(owner, store, [{ sku_id: sku, quantity: 1000 }]);

    // Stores and SKUs: MANY more of each (codes after the ones above in code order too).
    await copies('stores', store, MANY, { id: 'gen_random_uuid()', code: `'S-' || lpad(n::text, 4, '0')` });
    await copies('skus', sku, MANY, { id: 'gen_random_uuid()', code: `'K-' || lpad(n::text, 4, '0')` });
    // A balance of every SKU in the store (the roll's comes from its pieces), and MANY more ledger rows of one SKU.
    await t.admin.query(
      `INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) SELECT tenant_id, $2, id, 5 FROM skus WHERE tenant_id = $1 AND id <> $3 AND NOT tracks_pieces`,
      [tenantId, store, sku],
    );
    // Reorder levels: of every SKU, 5 (each of those balances at its level: low), and A-SKU's 10 (1000 held: not low).
    await t.admin.query(
      `INSERT INTO stock_reorder_levels (tenant_id, store_id, sku_id, quantity, op_id, changed_by_op) SELECT tenant_id, $2, id, CASE WHEN id = $3 THEN 10 ELSE 5 END, op_id, op_id FROM skus WHERE tenant_id = $1 AND NOT tracks_pieces`,
      [tenantId, store, sku],
    );
    const ledgerRow = (await t.admin.query(`SELECT id FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, sku])).rows[0].id;
    await copies('stock_ledger', ledgerRow, MANY, {});
    // Sales of the other store (its own stock and ledger): one through the API, MANY more with SQL (a receipt number each; some sharing a moment, as a batch's do).
    await givenStock(owner, otherStore, [{ sku_id: sku, quantity: 1 }]);
    const sale = await owner.post('/v1/sales', { store_id: otherStore, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    await copies('sales', sale.body.id, MANY, { id: 'gen_random_uuid()', receipt_number: 'src.receipt_number + n', created_at: `src.created_at - (n / 3) * interval '1 second'` });
    // Parties: a customer and a supplier through the API (their accounts), MANY more customers with SQL.
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'C', code: 'C-0' })).body.id as string;
    await owner.post('/v1/parties', { kind: 'supplier', name: 'S', code: 'S-0' });
    await owner.post('/v1/parties', { kind: 'supplier', name: 'S2', code: 'S-1' });
    await copies('parties', customer, MANY, { id: 'gen_random_uuid()', code: `'C-' || n` });
    // Three payments: postings on the store's drawer and on the customer's account.
    const payments: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const paid = await owner.post('/v1/payments', { party_id: customer, store_id: store, method: 'cash', amount: 100 * i });
      assert.equal(paid.status, 201, JSON.stringify(paid.body));
      payments.push(paid.body.op_id);
    }
    // Points of sale and visits.
    const agent = (await owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [store] })).body;
    const pointOfSale = await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, latitude: 1, longitude: 1 });
    assert.equal(pointOfSale.status, 201, JSON.stringify(pointOfSale.body));
    await copies('points_of_sale', pointOfSale.body.id, MANY, { id: 'gen_random_uuid()' });
    const visit = await owner.post('/v1/visits', { point_of_sale_id: pointOfSale.body.id, agent_token_id: agent.id, scheduled_for: '2027-01-01T10:00:00Z' });
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    await copies('visits', visit.body.id, MANY, { id: 'gen_random_uuid()', scheduled_for: `src.scheduled_for + n * interval '1 minute'` });
    // Tokens: MANY more like the agent's (each its own hash).
    await copies('api_tokens', agent.id, MANY, { id: 'gen_random_uuid()', token_hash: 'sha256(gen_random_uuid()::text::bytea)' });
    // Pieces (one batch call), and MANY more steps in one piece's history.
    const received = await owner.post('/v1/pieces', { store_id: store, sku_id: rollSku, pieces: Array.from({ length: MANY }, () => ({ kind: 'roll', quantity: 1000 })) });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const piece = (await owner.get(`/v1/pieces?limit=1`)).body.items[0].id as string;
    const event = (await t.admin.query(`SELECT id FROM events WHERE tenant_id = $1 AND subject_type = 'piece' AND subject_id = $2`, [tenantId, piece])).rows[0].id;
    await copies('events', event, MANY, {});
    // Review items of the tenant, and of the operator's queue.
    const opId = payments[0]!;
    await t.admin.query(
      `INSERT INTO review_items (tenant_id, id, kind, store_id, op_id, created_at) SELECT $1, gen_random_uuid(), 'test_item', $2, $3, now() FROM generate_series(1, $4::int)`,
      [tenantId, store, opId, MANY],
    );
    // Daily sales figures: MANY days.
    await t.admin.query(
      `INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op)
       SELECT $1, gen_random_uuid(), $2, date '2026-01-01' + n, n, 0, n * 100, $3, $3 FROM generate_series(0, $4::int - 1) n`,
      [tenantId, store, opId, MANY],
    );
    // Stock counts of the store: MANY through the API (each its own operation, as the table asks).
    for (let i = 0; i < MANY; i++) {
      const counted = await owner.post(`/v1/stores/${store}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: 1000 }] });
      assert.equal(counted.status, 201, JSON.stringify(counted.body));
    }
    await t.admin.query('ANALYZE');

    const byId = (item: Record<string, unknown>) => String(item.id);
    cases.push(
      { name: 'tokens', path: '/v1/tokens', key: byId, count: MANY + 2 }, // and the owner's and the agent's
      { name: 'stores', path: '/v1/stores', key: byId, count: MANY + 2 },
      { name: 'skus', path: '/v1/skus', key: byId, count: MANY + 2 },
      { name: 'skus by text', path: '/v1/skus', query: 'q=k-0', key: byId, count: MANY }, // K-0001 … K-0120
      { name: 'sku by code', path: '/v1/skus', query: 'code=K-0001', key: byId, count: 1 },
      { name: 'stock', path: `/v1/stores/${store}/stock`, key: (item) => String(item.sku_id), count: MANY + 2 },
      { name: 'stock as of', path: `/v1/stores/${store}/stock`, query: `as_of=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`, key: (item) => String(item.sku_id), count: MANY + 2 },
      { name: 'stock ledger', path: `/v1/stores/${store}/stock/${sku}/ledger`, key: byId, count: MANY + 1 },
      { name: 'stock counts', path: `/v1/stores/${store}/stock/counts`, key: byId, count: MANY },
      { name: 'low stock', path: `/v1/stores/${store}/stock/low`, key: (item) => String(item.sku_id), count: MANY },
      { name: 'sales', path: `/v1/stores/${otherStore}/sales`, key: byId, count: MANY + 1 },
      { name: 'completed sales', path: `/v1/stores/${otherStore}/sales`, query: 'status=completed', key: byId, count: MANY + 1 },
      { name: 'parties', path: '/v1/parties', key: byId, count: MANY + 4 }, // and the point of sale's party
      { name: 'supplier balances', path: '/v1/ledger/suppliers', key: (item) => String(item.party_id), count: 2 },
      { name: 'customer balances', path: '/v1/ledger/customers', key: (item) => String(item.party_id), count: 2 }, // and the point of sale's party
      { name: 'store accounts', path: `/v1/stores/${store}/accounts`, key: (item) => String(item.kind), count: 6 },
      { name: 'account postings', path: `/v1/stores/${store}/accounts/cash_drawer/postings`, key: byId, count: 3 },
      { name: 'party postings', path: `/v1/parties/${customer}/postings`, key: byId, count: 3 },
      { name: 'entries of an operation', path: `/v1/ledger/operations/${opId}`, key: byId, count: 1 },
      { name: 'points of sale', path: '/v1/points-of-sale', key: byId, count: MANY + 1 },
      { name: 'consignments', path: `/v1/points-of-sale/${pointOfSale.body.id}/consignments`, key: byId, count: 0 },
      { name: 'visits', path: '/v1/visits', key: byId, count: MANY + 1 },
      { name: 'pieces', path: '/v1/pieces', key: byId, count: MANY },
      { name: 'piece history', path: `/v1/pieces/${piece}/history`, key: (item) => String(item.event_id), count: MANY + 1 },
      { name: 'review items', path: '/v1/review-items', key: byId, count: MANY },
      { name: 'operator review items', path: '/v1/system/review-items', as: () => t.operator, key: byId, count: 0 },
      { name: 'settlements', path: '/v1/settlements', key: byId, count: 0 },
      { name: 'transfers', path: '/v1/transfers', key: byId, count: 0 },
      { name: 'daily sales', path: '/v1/analytics/daily-sales', query: `store_id=${store}&from=2026-01-01&to=2026-12-31`, key: (item) => String(item.business_date), count: MANY },
    );
  });
  after(() => t.close());

  const read = (list: ListCase, query: string): Promise<ApiResponse> =>
    (list.as?.() ?? owner).get(`${list.path}?${[list.query, query].filter((part) => part !== undefined && part !== '').join('&')}`);

  /** Every page from the first, with `limit` (or none): the keys in order and the pages' sizes. */
  async function walk(list: ListCase, limit: number | undefined): Promise<{ keys: string[]; sizes: number[] }> {
    const keys: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const query = [limit === undefined ? '' : `limit=${limit}`, cursor === null ? '' : `cursor=${cursor}`].filter(Boolean).join('&');
      const page = await read(list, query);
      assert.equal(page.status, 200, `${list.name} ?${query}: ${JSON.stringify(page.body)}`);
      assert.deepEqual(Object.keys(page.body).filter((name) => name !== 'as_of').sort(), ['items', 'next_cursor'], list.name);
      keys.push(...(page.body.items as Array<Record<string, unknown>>).map(list.key));
      sizes.push(page.body.items.length);
      cursor = page.body.next_cursor;
      assert.ok(sizes.length <= 20, `${list.name}: the walk ends`);
    } while (cursor !== null);
    return { keys, sizes };
  }

  it('without a limit, with or without a cursor: 50 items a page; the walk lists every item once, in order, and ends with next_cursor null', async () => {
    for (const list of cases) {
      const { keys, sizes } = await walk(list, undefined);
      assert.equal(keys.length, list.count, `${list.name}: ${keys.length} items`);
      assert.equal(new Set(keys).size, keys.length, `${list.name}: each item once`);
      // Every page but the last has 50 (a cursor alone pages by 50 as well).
      const full = Math.floor(list.count / 50);
      assert.deepEqual(sizes.slice(0, full), Array(full).fill(50), `${list.name}: ${sizes}`);
      // The order of a walk is the order of one big page (the list's own order).
      const whole = await read(list, 'limit=500');
      assert.equal(whole.status, 200, list.name);
      assert.deepEqual(keys, (whole.body.items as Array<Record<string, unknown>>).map(list.key), `${list.name}: the order of the list`);
      assert.equal(whole.body.next_cursor, null, list.name);
    }
  });

  it('a limit alone, and a limit with a cursor: pages of that size; limit=500 is accepted', async () => {
    for (const list of cases) {
      const { keys, sizes } = await walk(list, 7);
      assert.equal(keys.length, list.count, list.name);
      assert.ok(sizes.slice(0, -1).every((size) => size === 7), `${list.name}: ${sizes}`);
      assert.equal(new Set(keys).size, keys.length, list.name);
      assert.equal((await read(list, 'limit=500')).status, 200, list.name);
    }
  });

  it('a bad limit, a malformed cursor, a cursor of another list or of no list: 400 problem+json naming the parameter, for every list', async () => {
    // A cursor each list wrote, where it has two items or more.
    const written = new Map<string, string>();
    for (const list of cases) {
      const page = await read(list, 'limit=1');
      if (page.body.next_cursor) written.set(list.name, page.body.next_cursor);
    }
    assert.ok(written.size >= 15, `cursors written: ${[...written.keys()]}`);
    const wrong: string[] = [];
    for (const list of cases) {
      const own = written.get(list.name);
      const bad: Array<[string, string]> = [
        ['limit=0', 'limit'],
        ['limit=501', 'limit'],
        ['limit=abc', 'limit'],
        ['limit=-1', 'limit'],
        ['limit=2.5', 'limit'],
        ['cursor=not-a-cursor', 'cursor'],
        ['cursor=', 'cursor'],
        [`cursor=${Buffer.from('{"id":"x"}').toString('base64url')}`, 'cursor'],
        [`cursor=${encodeCursor({ id: randomUUID() }, listAt('/v1/nowhere'))}`, 'cursor'],
      ];
      if (own !== undefined) {
        // Its own position, without the list it came from (the cursors before lists were named), or with another list's name.
        const position = JSON.parse(Buffer.from(own, 'base64url').toString('utf8')).at;
        bad.push([`cursor=${Buffer.from(JSON.stringify(position)).toString('base64url')}`, 'cursor']);
        bad.push([`cursor=${encodeCursor(position, listAt(list.path === '/v1/skus' ? '/v1/stores' : '/v1/skus'))}`, 'cursor']);
        bad.push([`cursor=${own}x`, 'cursor']);
      }
      for (const [other, cursor] of written) if (other !== list.name && !(list.path === cases.find((c) => c.name === other)?.path)) bad.push([`cursor=${cursor}`, 'cursor']);
      for (const [query, parameter] of bad) {
        const answer = await read(list, query);
        const right =
          answer.status === 400 &&
          /^application\/problem\+json/.test(answer.headers.get('content-type') ?? '') &&
          answer.body.code === 'validation_failed' &&
          (answer.body.errors as Array<{ path: string }> | undefined)?.some((error) => error.path === `/querystring/${parameter}`) === true;
        if (!right) wrong.push(`${list.name} ?${query.slice(0, 60)} → ${answer.status} ${JSON.stringify(answer.body.errors ?? answer.body).slice(0, 200)}`);
      }
      if (own !== undefined) assert.equal((await read(list, `cursor=${own}`)).status, 200, `${list.name}: its own cursor`);
    }
    assert.deepEqual(wrong, []);
  });
});
