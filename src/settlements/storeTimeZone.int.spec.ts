import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { runCommand } from '../core/command.js';
import { catchUpDailySales } from '../analytics/catchUpDailySales.js';
import { rollupDailySales } from '../analytics/rollupDailySales.js';

/**
 * A store's business day is its own local day (its IANA `time_zone`), not the
 * UTC day: a New York shop trading until 22:30 has that evening's cash in
 * that day's count and daily figures, not in the next UTC day's.
 */
describe("a store's business day is the day in its time zone", () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** A tenant (drawer float 1,000) with a store in `timeZone` (or none given) holding stock. */
  async function shop(timeZone?: string) {
    const { owner, tenantId } = await t.newTenant();
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 1_000 })).status, 200);
    const created = await owner.post('/v1/stores', { code: 'NY', name: 'Corner shop', ...(timeZone === undefined ? {} : { time_zone: timeZone }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const store = created.body as { id: string; time_zone: string };
    const sku = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 100 })).body as { id: string };
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 10_000 }] });
    return { owner, tenantId, store, sku };
  }

  /** A cash sale of `amount` a till made offline at `at` (UTC), synced now. */
  async function offlineSale(owner: ApiClient, storeId: string, skuId: string, at: string, amount = 100) {
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: amount / 100, unit_price: 100 }], client_created_at: at }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    return synced.body.results[0].body as { id: string };
  }

  const saleDays = async (tenantId: string) =>
    (
      await t.admin.query<{ d: string }>(
        `SELECT to_char(e.business_date, 'YYYY-MM-DD') AS d FROM journal_entries e JOIN sales s ON s.tenant_id = e.tenant_id AND s.id = e.subject_id
         WHERE e.tenant_id = $1 AND e.kind = 'sale' ORDER BY s.client_created_at`,
        [tenantId],
      )
    ).rows.map((row) => row.d);

  const count = (owner: ApiClient, storeId: string, businessDate: string, declared: number) =>
    owner.post('/v1/settlements', { store_id: storeId, business_date: businessDate, declared_cash: declared }, { idempotencyKey: randomUUID() });

  async function catchUp(tenantId: string) {
    const outcome = await runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
      { type: 'analytics.rollup' },
      async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) }),
    );
    assert.equal(outcome.status, 200);
  }

  const figures = async (tenantId: string) =>
    (
      await t.admin.query<{ d: string; sales_count: number; revenue: string }>(
        `SELECT to_char(business_date, 'YYYY-MM-DD') AS d, sales_count, revenue::text FROM daily_sales_rollups
         WHERE tenant_id = $1 AND (sales_count > 0 OR revenue <> 0) ORDER BY business_date`,
        [tenantId],
      )
    ).rows.map((row) => [row.d, row.sales_count, Number(row.revenue)]);

  it('a store takes a time zone on creation (UTC by default), returns it and keeps it; an unknown zone is a 400 and nothing is written', async () => {
    const { owner, tenantId, store } = await shop('America/New_York');
    assert.equal(store.time_zone, 'America/New_York');
    assert.equal((await owner.get(`/v1/stores/${store.id}`)).body.time_zone, 'America/New_York');
    const plain = await owner.post('/v1/stores', { code: 'LDN', name: 'No zone given' });
    assert.equal(plain.status, 201);
    assert.equal(plain.body.time_zone, 'UTC');
    const listed = (await owner.get('/v1/stores')).body.items as Array<{ code: string; time_zone: string }>;
    assert.deepEqual(listed.map((row) => [row.code, row.time_zone]), [['LDN', 'UTC'], ['NY', 'America/New_York']]);
    for (const bad of ['Mars/Olympus_Mons', 'EST+5', '+05:00', 'america/new_york ', '']) {
      const refused = await owner.post('/v1/stores', { code: `X${randomUUID().slice(0, 6)}`, name: 'Nowhere', time_zone: bad });
      assert.equal(refused.status, 400, `${bad}: ${JSON.stringify(refused.body)}`);
      assert.equal(refused.headers.get('content-type')?.startsWith('application/problem+json'), true);
      assert.equal(refused.body.code, 'validation_failed');
      assert.equal(refused.body.errors[0].path, '/body/time_zone');
    }
    const stores = await t.admin.query(`SELECT code, time_zone FROM stores WHERE tenant_id = $1 ORDER BY code`, [tenantId]);
    assert.deepEqual(stores.rows, [{ code: 'LDN', time_zone: 'UTC' }, { code: 'NY', time_zone: 'America/New_York' }]);
  });

  it("a New York till's sale at 22:30 local (03:30 UTC the next day) lands in that local day's count and daily figures", async () => {
    const { owner, tenantId, store, sku } = await shop('America/New_York');
    // Given on 14 January (EST, UTC−5) the till sold for 500 cash at 22:30 local, offline, and for 200 at 09:00 local
    await offlineSale(owner, store.id, sku.id, '2026-01-14T14:00:00Z', 200);
    await offlineSale(owner, store.id, sku.id, '2026-01-15T03:30:00Z', 500);
    // and on 15 January at 00:30 local (05:30 UTC) for 300
    await offlineSale(owner, store.id, sku.id, '2026-01-15T05:30:00Z', 300);
    // Then the journal books the 22:30 sale on the 14th
    assert.deepEqual(await saleDays(tenantId), ['2026-01-14', '2026-01-14', '2026-01-15']);
    // and the count of the 14th expects the float and both of its sales
    const fourteenth = await count(owner, store.id, '2026-01-14', 1_700);
    assert.equal(fourteenth.status, 201, JSON.stringify(fourteenth.body));
    assert.deepEqual([fourteenth.body.cash_sales, fourteenth.body.expected_cash, fourteenth.body.variance], [700, 1_700, 0]);
    const fifteenth = await count(owner, store.id, '2026-01-15', 1_300);
    assert.equal(fifteenth.status, 201, JSON.stringify(fifteenth.body));
    assert.deepEqual([fifteenth.body.cash_sales, fifteenth.body.expected_cash, fifteenth.body.variance], [300, 1_300, 0]);
    const rows = await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d, cash_sales::int, expected_cash::int FROM settlements WHERE tenant_id = $1 ORDER BY 1`, [tenantId]);
    assert.deepEqual(rows.rows, [{ d: '2026-01-14', cash_sales: 700, expected_cash: 1_700 }, { d: '2026-01-15', cash_sales: 300, expected_cash: 1_300 }]);
    // and the daily figures are the local days'
    await catchUp(tenantId);
    assert.deepEqual(await figures(tenantId), [['2026-01-14', 2, 700], ['2026-01-15', 1, 300]]);
    const daily = await owner.get(`/v1/analytics/daily-sales?store_id=${store.id}&from=2026-01-01&to=2026-01-31`);
    assert.equal(daily.status, 200, JSON.stringify(daily.body));
    assert.deepEqual(daily.body.items.map((row: { business_date: string; revenue: number }) => [row.business_date, row.revenue]), [['2026-01-14', 700], ['2026-01-15', 300]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a New York store's daily figures: a sale without money (total 0) at 22:30 local counts on the local day; a sale synced after its local day was counted counts on the day its money is booked on", async () => {
    const { owner, tenantId, store, sku } = await shop('America/New_York');
    // Given a till gave one away (a total of 0: no money, no journal entry) at 22:30 local on 14 January (03:30 UTC on the 15th)
    const free = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 0 }], client_created_at: '2026-01-15T03:30:00Z' }],
    });
    assert.equal(free.body.results[0].status, 201, JSON.stringify(free.body));
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM journal_entries WHERE tenant_id = $1`, [tenantId])).rows[0].n, 0);
    // and 20 January (New York) was counted, then a till syncs a sale it rang up that day at 18:00 local (23:00 UTC, still the 20th in UTC too)
    const twentieth = await count(owner, store.id, '2026-01-20', 1_000);
    assert.equal(twentieth.status, 201, JSON.stringify(twentieth.body));
    await offlineSale(owner, store.id, sku.id, '2026-01-20T23:00:00Z', 300);
    // Then its money is booked on the 21st, the first day not counted, whose count expects its cash
    assert.deepEqual(await saleDays(tenantId), ['2026-01-21']);
    const twentyFirst = await count(owner, store.id, '2026-01-21', 1_300);
    assert.deepEqual([twentyFirst.status, twentyFirst.body.cash_sales, twentyFirst.body.variance], [201, 300, 0]);
    // When the figures are caught up
    await catchUp(tenantId);
    // Then the sale without money is on the New York day it happened (the 14th, not the UTC 15th), the synced sale on its money's day (the 21st, not the 20th)
    assert.deepEqual(await figures(tenantId), [['2026-01-14', 1, 0], ['2026-01-21', 1, 300]]);
    const daily = await owner.get(`/v1/analytics/daily-sales?store_id=${store.id}&from=2026-01-01&to=2026-01-31`);
    assert.equal(daily.status, 200, JSON.stringify(daily.body));
    assert.deepEqual(
      daily.body.items.map((row: { business_date: string; sales_count: number; revenue: number }) => [row.business_date, row.sales_count, row.revenue]),
      [['2026-01-14', 1, 0], ['2026-01-21', 1, 300]],
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a day when the clocks change (23 and 25 hours in New York) has exactly its own hours', async () => {
    const { owner, tenantId, store, sku } = await shop('America/New_York');
    // 8 March 2026: 02:00 EST → 03:00 EDT, the day runs 05:00 UTC to 04:00 UTC the next day (23 h)
    // 1 November 2026: 02:00 EDT → 01:00 EST, the day runs 04:00 UTC to 05:00 UTC the next day (25 h)
    const moments: Array<[string, string]> = [
      ['2026-03-08T04:59:59.999999Z', '2026-03-07'],
      ['2026-03-08T05:00:00Z', '2026-03-08'],
      ['2026-03-09T03:59:59Z', '2026-03-08'],
      ['2026-03-09T04:00:00Z', '2026-03-09'],
      ['2026-11-01T03:59:59Z', '2026-10-31'],
      ['2026-11-01T04:00:00Z', '2026-11-01'],
      ['2026-11-02T04:59:59Z', '2026-11-01'],
      ['2026-11-02T05:00:00Z', '2026-11-02'],
    ];
    for (const [at] of moments) await offlineSale(owner, store.id, sku.id, at);
    assert.deepEqual(await saleDays(tenantId), moments.map(([, day]) => day));
    await catchUp(tenantId);
    assert.deepEqual(await figures(tenantId), [
      ['2026-03-07', 1, 100],
      ['2026-03-08', 2, 200],
      ['2026-03-09', 1, 100],
      ['2026-10-31', 1, 100],
      ['2026-11-01', 2, 200],
      ['2026-11-02', 1, 100],
    ]);
    const counted = await count(owner, store.id, '2026-03-08', 1_200);
    assert.deepEqual([counted.status, counted.body.cash_sales, counted.body.variance], [201, 200, 0]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("'today' is the store's: money booked now and the latest day that may be counted follow its zone", async () => {
    for (const zone of ['Pacific/Kiritimati', 'Pacific/Pago_Pago']) {
      const { owner, tenantId, store, sku } = await shop(zone);
      const { today, tomorrow } = (
        await t.admin.query<{ today: string; tomorrow: string }>(
          `SELECT to_char(d, 'YYYY-MM-DD') AS today, to_char(d + 1, 'YYYY-MM-DD') AS tomorrow FROM (SELECT (now() AT TIME ZONE $1)::date AS d) x`,
          [zone],
        )
      ).rows[0]!;
      const sold = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 4, unit_price: 100 }] });
      assert.equal(sold.status, 201);
      assert.deepEqual(await saleDays(tenantId), [today], zone);
      const early = await count(owner, store.id, tomorrow, 1_400);
      assert.equal(early.status, 400, JSON.stringify(early.body));
      assert.equal(early.body.errors[0].path, '/body/business_date');
      const counted = await count(owner, store.id, today, 1_400);
      assert.equal(counted.status, 201, `${zone}: ${JSON.stringify(counted.body)}`);
      assert.deepEqual([counted.body.cash_sales, counted.body.variance], [400, 0]);
    }
  });
  it("changing a store's zone keeps booked money and counts where they are, and recomputes its daily figures in the new zone (a sale with money stays on its money's day, one without moves)", async () => {
    const { owner, tenantId, store, sku } = await shop();
    assert.equal(store.time_zone, 'UTC');
    // Given a UTC store sold at 03:30 UTC on 15 January (22:30 on the 14th in New York) for 500, and gave one away then (a total of 0: no money, no entry),
    // and the 15th was counted and rolled up
    await offlineSale(owner, store.id, sku.id, '2026-01-15T03:30:00Z', 500);
    const free = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 0 }], client_created_at: '2026-01-15T03:30:00Z' }],
    });
    assert.equal(free.body.results[0].status, 201, JSON.stringify(free.body));
    const counted = await count(owner, store.id, '2026-01-15', 1_500);
    assert.deepEqual([counted.status, counted.body.cash_sales], [201, 500]);
    await catchUp(tenantId);
    assert.deepEqual(await figures(tenantId), [['2026-01-15', 2, 500]]);
    // When an unknown zone is asked for: 400, nothing changes
    const refused = await owner.patch(`/v1/stores/${store.id}`, { time_zone: 'America/Gotham' });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.errors[0].path, '/body/time_zone');
    assert.equal((await owner.get(`/v1/stores/${store.id}`)).body.time_zone, 'UTC');
    // When the store moves to New York time
    const changed = await owner.patch(`/v1/stores/${store.id}`, { time_zone: 'America/New_York' });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.equal(changed.body.time_zone, 'America/New_York');
    assert.equal((await owner.get(`/v1/stores/${store.id}`)).body.time_zone, 'America/New_York');
    // Then the money stays booked (and counted) on the 15th
    assert.deepEqual(await saleDays(tenantId), ['2026-01-15']);
    const settled = await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d, cash_sales::int FROM settlements WHERE tenant_id = $1`, [tenantId]);
    assert.deepEqual(settled.rows, [{ d: '2026-01-15', cash_sales: 500 }]);
    // and the figures are recomputed in New York time: the sale with money stays on its money's day (the 15th, as its entry and count),
    // the one without money moves to the New York day it happened (the 14th)
    assert.deepEqual(await figures(tenantId), [['2026-01-14', 1, 0], ['2026-01-15', 1, 500]]);
    const rolled = await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d, sales_count FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`, [tenantId]);
    assert.deepEqual(rolled.rows, [{ d: '2026-01-14', sales_count: 1 }, { d: '2026-01-15', sales_count: 1 }]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales']), []);
    // and a later till sale of the counted 15th (New York) moves on to the first day not counted, as any late money
    await offlineSale(owner, store.id, sku.id, '2026-01-15T20:00:00Z', 200);
    assert.deepEqual(await saleDays(tenantId), ['2026-01-15', '2026-01-16']);
    // and the same zone again changes nothing
    const again = await owner.patch(`/v1/stores/${store.id}`, { time_zone: 'America/New_York' });
    assert.equal(again.status, 200);
    await catchUp(tenantId);
    assert.deepEqual(await figures(tenantId), [['2026-01-14', 1, 0], ['2026-01-15', 1, 500], ['2026-01-16', 1, 200]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("zone changes racing the rollup of the days they move sales between leave figures that match the sales in the zone that stayed", async () => {
    const { owner, tenantId, store, sku } = await shop();
    // Given sales without money (a total of 0: they count on the store's day they happened) around midnight UTC on the 14th/15th
    for (const at of ['2026-01-15T01:00:00Z', '2026-01-15T03:30:00Z', '2026-01-14T23:00:00Z', '2026-01-15T06:00:00Z']) {
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 0 }], client_created_at: at }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    }
    const rollup = (day: string) =>
      runCommand(
        t.db,
        { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
        { type: 'analytics.rollup' },
        async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, day) }),
      );
    // When the store's zone is changed back and forth while those days are rolled up, at the same moments
    for (const zone of ['America/New_York', 'UTC', 'Pacific/Kiritimati', 'America/Los_Angeles', 'UTC', 'America/New_York']) {
      const [changed, ...rolled] = await Promise.all([
        owner.patch(`/v1/stores/${store.id}`, { time_zone: zone }),
        rollup('2026-01-14'),
        rollup('2026-01-15'),
        rollup('2026-01-14'),
      ]);
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      for (const outcome of rolled) assert.equal(outcome.status, 200);
      // Then after each round the figures are the sales' in the zone now set
      assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales']), [], `after the change to ${zone}`);
    }
    const counted = await t.admin.query<{ d: string; n: number }>(
      `SELECT to_char(business_date, 'YYYY-MM-DD') AS d, sales_count AS n FROM daily_sales_rollups WHERE tenant_id = $1 AND sales_count > 0 ORDER BY 1`,
      [tenantId],
    );
    // New York: 23:00 (14th UTC) is 18:00 on the 14th, 01:00 and 03:30 are the 14th's evening, 06:00 is 01:00 on the 15th
    assert.deepEqual(counted.rows, [{ d: '2026-01-14', n: 3 }, { d: '2026-01-15', n: 1 }]);
  });

  it('a rollup that starts while a zone change is under way waits for it and counts in the new zone (it overwrote the change\'s figures with the old zone\'s)', async () => {
    const { owner, tenantId, store, sku } = await shop();
    // Given a sale without money at 03:30 UTC on the 15th (the 14th in New York), rolled up in UTC
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 0 }], client_created_at: '2026-01-15T03:30:00Z' }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const rollup = (day: string) =>
      runCommand(
        t.db,
        { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
        { type: 'analytics.rollup' },
        async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, day) }),
      );
    assert.equal((await rollup('2026-01-15')).status, 200);
    const waiting = async (n: number) => {
      for (let i = 0; i < 200; i++) {
        const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
        if (rows[0].n >= n) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`never ${n} sessions waiting on a lock`);
    };
    // When the zone change to New York is held just before it writes the figures (another session holds the 15th's row),
    const holder = await t.admin.connect();
    let changed: Promise<{ status: number; body: any }>;
    let rolled: Promise<{ status: number }>;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM daily_sales_rollups WHERE tenant_id = $1 AND store_id = $2 AND business_date = '2026-01-15' FOR UPDATE`, [tenantId, store.id]);
      changed = owner.patch(`/v1/stores/${store.id}`, { time_zone: 'America/New_York' });
      await waiting(1);
      // and a rollup of the 15th starts meanwhile
      rolled = rollup('2026-01-15');
      await waiting(2);
    } finally {
      await holder.query('COMMIT');
      holder.release();
    }
    assert.equal((await changed!).status, 200);
    assert.equal((await rolled!).status, 200);
    // Then the figures are New York's: the sale on the 14th, none on the 15th
    const counted = await t.admin.query<{ d: string; n: number }>(
      `SELECT to_char(business_date, 'YYYY-MM-DD') AS d, sales_count AS n FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`,
      [tenantId],
    );
    assert.deepEqual(counted.rows, [{ d: '2026-01-14', n: 1 }, { d: '2026-01-15', n: 0 }]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales']), []);
  });
});
