import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

/**
 * A payment or a void a till queued offline carries the till's time
 * (`client_created_at`), and its money is booked on that day by the sale's
 * rule (open_business_date: never before the store's latest count, never in
 * the future) — not on the day it reached us, which put yesterday's cash in
 * today's count.
 */
describe("a till's queued payment or void is booked on the till's day, like a sale", () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  async function days() {
    return (
      await t.admin.query<{ today: string; yesterday: string; threeDaysAgo: string }>(
        `SELECT to_char(d, 'YYYY-MM-DD') AS today, to_char(d - 1, 'YYYY-MM-DD') AS yesterday, to_char(d - 3, 'YYYY-MM-DD') AS "threeDaysAgo"
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) x`,
      )
    ).rows[0]!;
  }

  /** A tenant (drawer float 1,000) with a store holding stock, a supplier and a customer. */
  async function shop() {
    const { owner, tenantId } = await t.newTenant();
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 1_000 })).status, 200);
    const store = (await owner.post('/v1/stores', { code: 'TILL', name: 'Till shop' })).body as { id: string };
    const sku = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 100 })).body as { id: string };
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 1_000 }] });
    const supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Milk van' })).body as { id: string };
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Tab Tom' })).body as { id: string };
    return { owner, tenantId, store, sku, supplier, customer };
  }

  const entryDates = async (tenantId: string, kind: string) =>
    (
      await t.admin.query<{ d: string }>(
        `SELECT to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE tenant_id = $1 AND kind = $2 ORDER BY business_date, created_at`,
        [tenantId, kind],
      )
    ).rows.map((row) => row.d);

  const count = (owner: ApiClient, storeId: string, businessDate: string, declared: number) =>
    owner.post('/v1/settlements', { store_id: storeId, business_date: businessDate, declared_cash: declared }, { idempotencyKey: randomUUID() });

  it("a cash payment queued offline yesterday and synced today lands in yesterday's count, not today's", async () => {
    const { owner, tenantId, store, supplier, customer } = await shop();
    const { today, yesterday } = await days();
    // Given yesterday the till paid the milk van 300 from the drawer at 18:00 and Tom paid 120 of his tab at 18:30, offline
    const paid = await owner.post(
      '/v1/payments',
      { party_id: supplier.id, store_id: store.id, method: 'cash', amount: 300, client_created_at: `${yesterday}T18:00:00Z` },
      { idempotencyKey: 'till-1/payment-1' },
    );
    assert.equal(paid.status, 201, JSON.stringify(paid.body));
    const received = await owner.post(
      '/v1/payments',
      { party_id: customer.id, store_id: store.id, method: 'cash', amount: 120, client_created_at: `${yesterday}T18:30:00.123456+00:00` },
      { idempotencyKey: 'till-1/payment-2' },
    );
    assert.equal(received.status, 201, JSON.stringify(received.body));
    // Then their entries are yesterday's
    assert.deepEqual(await entryDates(tenantId, 'payment'), [yesterday, yesterday]);
    // and the answer, the payment as read and its row say when the till paid, where it was booked and when it reached us
    assert.equal(paid.body.client_created_at, `${yesterday}T18:00:00.000Z`);
    assert.equal(paid.body.business_date, yesterday);
    assert.equal(received.body.client_created_at, `${yesterday}T18:30:00.123Z`);
    assert.equal(received.body.business_date, yesterday);
    assert.ok(new Date(paid.body.created_at).toISOString().startsWith(today), 'created_at is when it was recorded');
    const read = await owner.get(`/v1/payments/${paid.body.id}`);
    // (the payment as read also says whether it was reverted: not yet)
    assert.deepEqual(read.body, { ...paid.body, reverted_by_op: null, reverted_at: null, revert_business_date: null });
    const row = (
      await t.admin.query(`SELECT to_char(client_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at FROM payments WHERE id = $1`, [received.body.id])
    ).rows[0];
    assert.equal(row.at, `${yesterday}T18:30:00.123456`);
    // and yesterday's count expects them: 1,000 float − 300 paid out + 120 received
    const yesterdays = await count(owner, store.id, yesterday, 820);
    assert.equal(yesterdays.status, 201, JSON.stringify(yesterdays.body));
    assert.deepEqual(
      [yesterdays.body.payments_in, yesterdays.body.payments_out, yesterdays.body.expected_cash, yesterdays.body.variance],
      [120, 300, 820, 0],
    );
    // and today's count does not
    const todays = await count(owner, store.id, today, 1_000);
    assert.equal(todays.status, 201, JSON.stringify(todays.body));
    assert.deepEqual([todays.body.payments_in, todays.body.payments_out, todays.body.expected_cash, todays.body.variance], [0, 0, 1_000, 0]);
    // The same request again with its key replays the first answer, nothing new
    const replay = await owner.post(
      '/v1/payments',
      { party_id: supplier.id, store_id: store.id, method: 'cash', amount: 300, client_created_at: `${yesterday}T18:00:00Z` },
      { idempotencyKey: 'till-1/payment-1' },
    );
    assert.equal(replay.status, 201);
    assert.deepEqual(replay.body, paid.body);
    assert.deepEqual(await entryDates(tenantId, 'payment'), [yesterday, yesterday]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a void queued offline yesterday and synced today takes the cash out of yesterday's count", async () => {
    const { owner, tenantId, store, sku } = await shop();
    const { today, yesterday } = await days();
    // Given yesterday, offline, the till sold for 500 cash at 10:00 and voided it at 10:05, handing the cash back
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: 'till-1/sale-1', store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 5, unit_price: 100 }], client_created_at: `${yesterday}T10:00:00Z` }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const sale = synced.body.results[0].body as { id: string };
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'wrong tea', client_created_at: `${yesterday}T10:05:00Z` }, { idempotencyKey: 'till-1/void-1' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    // Then the reversal is booked yesterday, with its sale
    assert.deepEqual(await entryDates(tenantId, 'sale'), [yesterday]);
    assert.deepEqual(await entryDates(tenantId, 'sale_void'), [yesterday]);
    // and the sale says when the till voided it (voided_at: when the void reached us)
    assert.equal(voided.body.status, 'voided');
    assert.equal(voided.body.void_client_created_at, `${yesterday}T10:05:00.000Z`);
    assert.ok(new Date(voided.body.voided_at).toISOString().startsWith(today));
    assert.deepEqual((await owner.get(`/v1/sales/${sale.id}`)).body, voided.body);
    const row = (await t.admin.query(`SELECT void_client_created_at FROM sales WHERE id = $1`, [sale.id])).rows[0];
    assert.equal(row.void_client_created_at.toISOString(), `${yesterday}T10:05:00.000Z`);
    // and yesterday's count nets the sale and its void; today's has neither
    const yesterdays = await count(owner, store.id, yesterday, 1_000);
    assert.equal(yesterdays.status, 201, JSON.stringify(yesterdays.body));
    assert.deepEqual([yesterdays.body.cash_sales, yesterdays.body.cash_voids, yesterdays.body.expected_cash, yesterdays.body.variance], [500, 500, 1_000, 0]);
    const todays = await count(owner, store.id, today, 1_000);
    assert.equal(todays.status, 201, JSON.stringify(todays.body));
    assert.deepEqual([todays.body.cash_sales, todays.body.cash_voids, todays.body.expected_cash, todays.body.variance], [0, 0, 1_000, 0]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('without client_created_at a payment and a void are booked on the day they arrive, as before', async () => {
    const { owner, tenantId, store, sku, supplier } = await shop();
    const { today } = await days();
    const paid = await owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'cash', amount: 40 });
    assert.equal(paid.status, 201, JSON.stringify(paid.body));
    assert.equal(paid.body.client_created_at, null);
    assert.equal(paid.body.business_date, today);
    const sale = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] });
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'oops' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.equal(voided.body.void_client_created_at, null);
    assert.deepEqual(await entryDates(tenantId, 'payment'), [today]);
    assert.deepEqual(await entryDates(tenantId, 'sale_void'), [today]);
  });

  it("a till time before the store's latest count (a day not counted, a clock reset to 1970) books on the first day after it with no count; a store never counted keeps the till's day", async () => {
    const { owner, tenantId, store, supplier } = await shop();
    const never = (await owner.post('/v1/stores', { code: 'NVR', name: 'Never counted' })).body as { id: string };
    const { today, yesterday, threeDaysAgo } = await days();
    // Given the store counted yesterday (never the day three days ago)
    assert.equal((await count(owner, store.id, yesterday, 1_000)).status, 201);
    const pay = (storeId: string, at: string, amount: number) =>
      owner.post('/v1/payments', { party_id: supplier.id, store_id: storeId, method: 'cash', amount, client_created_at: at }, { idempotencyKey: randomUUID() });
    // When the till syncs a payment stamped 1970, one of three days ago and one of yesterday (already counted)
    for (const [at, amount] of [
      ['1970-01-01T09:00:00Z', 1],
      [`${threeDaysAgo}T09:00:00Z`, 2],
      [`${yesterday}T23:59:59Z`, 4],
    ] as const) {
      const paid = await pay(store.id, at, amount);
      assert.equal(paid.status, 201, JSON.stringify(paid.body));
      assert.equal(paid.body.business_date, today);
      assert.equal(paid.body.client_created_at, new Date(at).toISOString(), 'the till time is recorded as sent');
    }
    // Then all are booked today, and today's count expects them
    const todays = await count(owner, store.id, today, 993);
    assert.equal(todays.status, 201, JSON.stringify(todays.body));
    assert.deepEqual([todays.body.payments_out, todays.body.variance], [7, 0]);
    // A store never counted keeps the till's day
    const old = await pay(never.id, `${threeDaysAgo}T09:00:00Z`, 8);
    assert.equal(old.body.business_date, threeDaysAgo);
    const dates = (await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE id = $1`, [old.body.entry_id])).rows;
    assert.deepEqual(dates, [{ d: threeDaysAgo }]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a till time early on 0001-01-01 in UTC, in a store west of UTC (its day: 31 December of 1 BC), books on 0001-01-01 — a day the API can name and a count can find", async () => {
    const { owner, tenantId, sku, supplier } = await shop();
    const west = (await owner.post('/v1/stores', { code: 'WEST', name: 'West', time_zone: 'America/New_York' })).body as { id: string };
    await owner.post(`/v1/stores/${west.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 10 }] });
    const at = '0001-01-01T00:00:00Z';
    // A payment the till stamped with a clock reset to the first moment of year 0001 (UTC)
    const paid = await owner.post('/v1/payments', { party_id: supplier.id, store_id: west.id, method: 'cash', amount: 10, client_created_at: at }, { idempotencyKey: randomUUID() });
    assert.equal(paid.status, 201, JSON.stringify(paid.body));
    assert.deepEqual([paid.body.business_date, paid.body.client_created_at], ['0001-01-01', '0001-01-01T00:00:00.000Z']);
    assert.equal((await owner.get(`/v1/payments/${paid.body.id}`)).body.business_date, '0001-01-01');
    // and a sale synced from that till
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: west.id, payment_method: 'cash', client_created_at: at, items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] }],
    });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    // Then every entry is dated 0001-01-01 (never a day before the first the API can name), and that day's count finds the cash
    const dates = (await t.admin.query<{ d: string }>(`SELECT business_date::text AS d FROM journal_entries WHERE tenant_id = $1 AND store_id = $2 ORDER BY kind`, [tenantId, west.id])).rows;
    assert.deepEqual(dates, [{ d: '0001-01-01' }, { d: '0001-01-01' }]);
    const counted = await count(owner, west.id, '0001-01-01', 1_090); // the float, + 100, − 10
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    assert.deepEqual([counted.body.cash_sales, counted.body.payments_out, counted.body.variance], [100, 10, 0]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a till clock in the future books today (never a day that has not started), its time kept as sent', async () => {
    const { owner, tenantId, store, sku, supplier } = await shop();
    const { today } = await days();
    const paid = await owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'cash', amount: 10, client_created_at: '2999-01-01T00:00:00Z' });
    assert.equal(paid.status, 201, JSON.stringify(paid.body));
    assert.deepEqual([paid.body.business_date, paid.body.client_created_at], [today, '2999-01-01T00:00:00.000Z']);
    const sale = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] });
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'clock', client_created_at: '2999-01-01T00:00:00Z' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.deepEqual(await entryDates(tenantId, 'payment'), [today]);
    assert.deepEqual(await entryDates(tenantId, 'sale_void'), [today]);
  });

  it("a void of a sale whose day is counted books on the void's own day — the first one open — and never before its sale's day", async () => {
    const { owner, tenantId, store, sku } = await shop();
    const never = (await owner.post('/v1/stores', { code: 'NVR', name: 'Never counted' })).body as { id: string };
    await owner.post(`/v1/stores/${never.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 10 }] });
    const { today, yesterday, threeDaysAgo } = await days();
    const syncSale = async (storeId: string, at: string) => {
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 2, unit_price: 100 }], client_created_at: at }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
      return synced.body.results[0].body as { id: string };
    };
    // Given a sale of yesterday, and yesterday counted with its cash
    const sale = await syncSale(store.id, `${yesterday}T09:00:00Z`);
    const counted = await count(owner, store.id, yesterday, 1_200);
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    assert.deepEqual([counted.body.cash_sales, counted.body.variance], [200, 0]);
    // When its void, made yesterday evening after the count, is synced today
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'late', client_created_at: `${yesterday}T20:00:00Z` });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    // Then the reversal is today's — yesterday's count stays as it was, and today's expects the cash out
    const entries = (
      await t.admin.query(`SELECT kind, to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE subject_id = $1 ORDER BY kind`, [sale.id])
    ).rows;
    assert.deepEqual(entries, [
      { kind: 'sale', d: yesterday },
      { kind: 'sale_void', d: today },
    ]);
    const todays = await count(owner, store.id, today, 800);
    assert.equal(todays.status, 201, JSON.stringify(todays.body));
    assert.deepEqual([todays.body.cash_voids, todays.body.expected_cash, todays.body.variance], [200, 800, 0]);
    // A void stamped before its own sale's day (a clock reset) is booked on the sale's day, not in 1970
    const old = await syncSale(never.id, `${threeDaysAgo}T09:00:00Z`);
    const reset = await owner.post(`/v1/sales/${old.id}/void`, { reason: 'reset clock', client_created_at: '1970-01-01T00:00:00Z' });
    assert.equal(reset.status, 200, JSON.stringify(reset.body));
    assert.equal(reset.body.void_client_created_at, '1970-01-01T00:00:00.000Z');
    const oldEntries = (
      await t.admin.query(`SELECT kind, to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE subject_id = $1 ORDER BY kind`, [old.id])
    ).rows;
    assert.deepEqual(oldEntries, [
      { kind: 'sale', d: threeDaysAgo },
      { kind: 'sale_void', d: threeDaysAgo },
    ]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the OpenAPI document shows the till time on a payment and a void, and where and when each was recorded', async () => {
    type Schema = { properties: Record<string, { format?: string; anyOf?: Array<{ format?: string; type?: string }>; description?: string }>; required?: string[] };
    const doc = (await t.operator.get('/openapi.json')).body as { paths: Record<string, Record<string, { requestBody: { content: Record<string, { schema: Schema }> }; responses: Record<string, { content: Record<string, { schema: Schema }> }> }>> };
    const body = (path: string) => doc.paths[path]!.post!.requestBody.content['application/json']!.schema;
    const answer = (path: string, status: string) => doc.paths[path]!.post!.responses[status]!.content['application/json']!.schema;
    for (const path of ['/v1/payments', '/v1/sales/{id}/void']) {
      const field = body(path).properties.client_created_at!;
      assert.equal(field.format, 'date-time', path);
      assert.match(field.description ?? '', /latest count/, path);
      assert.ok(!(body(path).required ?? []).includes('client_created_at'), `${path}: optional`);
    }
    const payment = answer('/v1/payments', '201');
    assert.deepEqual(payment.properties.client_created_at!.anyOf!.map((branch) => branch.format ?? branch.type), ['date-time', 'null']);
    assert.equal(payment.properties.business_date!.format, 'date');
    const sale = answer('/v1/sales/{id}/void', '200');
    assert.deepEqual(sale.properties.void_client_created_at!.anyOf!.map((branch) => branch.format ?? branch.type), ['date-time', 'null']);
  });

  for (const [name, at] of [
    ['not a time', 'yesterday evening'],
    ['a day with no time', '2026-01-15'],
    ['a date that does not exist', '2026-02-30T10:00:00Z'],
    ['year 0', '0000-06-01T10:00:00Z'],
    ['after the year 9999 in UTC', '9999-12-31T23:00:00-05:00'],
    ['before the year 0001 in UTC', '0001-01-01T00:00:00+01:00'],
    ['an offset beyond ±15:59', '2026-01-15T10:00:00+16:00'],
    ['a number', 1_700_000_000],
    ['null', null],
  ] as Array<[string, unknown]>) {
    it(`client_created_at ${name} → 400 validation_failed at /body/client_created_at, nothing written`, async () => {
      const { owner, tenantId, store, sku, supplier } = await shop();
      const sale = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] });
      const state = async () =>
        (
          await t.admin.query(
            `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                    (SELECT count(*) FROM payments WHERE tenant_id = $1)::int AS payments,
                    (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                    (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
                    (SELECT string_agg(status, ',') FROM sales WHERE tenant_id = $1) AS sales,
                    (SELECT sum(quantity)::int FROM stock_balances WHERE tenant_id = $1) AS stock`,
            [tenantId],
          )
        ).rows[0];
      const before = await state();
      for (const response of [
        await owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'cash', amount: 10, client_created_at: at }, { idempotencyKey: randomUUID() }),
        await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'bad time', client_created_at: at }, { idempotencyKey: randomUUID() }),
      ]) {
        assert.equal(response.status, 400, JSON.stringify(response.body));
        assert.match(String(response.headers.get('content-type')), /^application\/problem\+json/);
        assert.equal(response.body.code, 'validation_failed');
        assert.deepEqual(
          response.body.errors.map((error: { path: string }) => error.path),
          ['/body/client_created_at'],
        );
      }
      assert.deepEqual(await state(), before);
    });
  }
});
