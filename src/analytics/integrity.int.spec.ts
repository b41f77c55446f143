/** daily_sales_rollup_matches_sales: figures that no longer match their sales, and only those. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { runCommand } from '../core/command.js';
import { allChecks } from '../integrity/registry.js';
import { runChecksAsOwner } from '../integrity/runChecks.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { rollupDailySales } from './rollupDailySales.js';
import { catchUpDailySales } from './catchUpDailySales.js';
import { testCheckLog } from '../../test/support/integrity.js';
import { nodesOf, type PlanNode } from '../../test/support/plans.js';
import { SALE_DAY_RULE } from './catchUpDailySales.js';
import { SALE_DAY } from './rollupDailySales.js';

describe('integrity: daily sales figures against the sales', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  interface Shop {
    tenantId: string;
    owner: ApiClient;
    storeId: string;
    skuId: string;
    sales: Array<{ id: string; total: number }>;
  }

  const today = () => new Date().toISOString().slice(0, 10);

  /** A store with three sales today, one voided, and today's figures computed: consistent. */
  async function newShop(): Promise<Shop> {
    const { tenantId, owner } = await t.newTenant();
    const storeId = await givenStore(owner, `R${randomUUID().slice(0, 6)}`);
    const skuId = await givenSku(owner, `K${randomUUID().slice(0, 6)}`, 'piece', 250);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 100 }]);
    const sales = [];
    for (const quantity of [1, 2, 3]) {
      const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 250 }] }, { idempotencyKey: randomUUID() });
      assert.equal(sale.status, 201, JSON.stringify(sale.body));
      sales.push(sale.body);
    }
    assert.equal((await owner.post(`/v1/sales/${sales[1].id}/void`, { reason: 'test' }, { idempotencyKey: randomUUID() })).status, 200);
    await rollup(tenantId);
    return { tenantId, owner, storeId, skuId, sales };
  }

  async function rollup(tenantId: string): Promise<void> {
    const input = {
      tenantId,
      principal: { kind: 'operator' as const, name: 'test' },
      correlationId: `rollup-${randomUUID()}`,
      fingerprint: 'rollup',
    };
    const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, today()) }));
    assert.equal(outcome.status, 200);
  }

  /** Time passes: the figures were computed well after the day's last change (beyond the settle margin). */
  async function later(shop: Shop): Promise<void> {
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = computed_at + interval '10 minutes' WHERE tenant_id = $1`, [shop.tenantId]);
  }

  async function asSuperuser(statement: string, params: unknown[]): Promise<void> {
    await withTriggersOff(t.admin, [[statement, params]]);
  }

  async function reported(shop: Shop): Promise<string[]> {
    const run = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 600 }, testCheckLog);
    return [...new Set(run.findings.filter((finding) => finding.tenant_id === shop.tenantId).map((finding) => finding.check))].sort();
  }

  it('figures computed from the sales match them: nothing reported', async () => {
    const shop = await newShop();
    const figures = (await t.admin.query(`SELECT sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [shop.tenantId])).rows;
    assert.deepEqual(figures, [{ sales_count: 3, voided_count: 1, revenue: 250 * 4 }]);
    assert.deepEqual(await reported(shop), []);
    await later(shop);
    assert.deepEqual(await reported(shop), []);
  });

  it('daily_sales_rollup_matches_sales: revenue changed after the figures were computed', async () => {
    const shop = await newShop();
    await later(shop);
    await asSuperuser(`UPDATE daily_sales_rollups SET revenue = revenue + 1 WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
    const run = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 600 }, testCheckLog);
    const [finding] = run.findings.filter((f) => f.tenant_id === shop.tenantId);
    assert.equal(finding?.subject, `${shop.storeId}/${today()}`);
    assert.deepEqual((finding?.detail as { sales: unknown }).sales, { sales_count: 3, voided_count: 1, revenue: 1000 });
  });

  it('daily_sales_rollup_matches_sales: wrong figures whose computed_at was set back before the day\'s sales (their snapshot still counts every sale)', async () => {
    const shop = await newShop();
    await asSuperuser(`UPDATE daily_sales_rollups SET revenue = revenue + 1, computed_at = computed_at - interval '1 hour' WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
  });

  it('daily_sales_rollup_matches_sales: a sale counted that is not there (the count off by one)', async () => {
    const shop = await newShop();
    await later(shop);
    await asSuperuser(`UPDATE daily_sales_rollups SET sales_count = sales_count + 1 WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
  });

  it('a sale or void since the figures were computed is not a finding (the nightly run recomputes that day); recomputed, they match again', async () => {
    const shop = await newShop();
    await later(shop);
    // A sale and a void after the figures (they are stale, not wrong)
    const sale = await shop.owner.post('/v1/sales', { store_id: shop.storeId, payment_method: 'cash', items: [{ sku_id: shop.skuId, quantity: 5, unit_price: 250 }] }, { idempotencyKey: randomUUID() });
    assert.equal(sale.status, 201);
    assert.equal((await shop.owner.post(`/v1/sales/${shop.sales[0]!.id}/void`, { reason: 'later' }, { idempotencyKey: randomUUID() })).status, 200);
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = now() - interval '1 minute' WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), []);
    // Recomputed: they match, and time passing changes nothing
    await rollup(shop.tenantId);
    await later(shop);
    assert.deepEqual(await reported(shop), []);
    const figures = (await t.admin.query(`SELECT sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [shop.tenantId])).rows;
    assert.deepEqual(figures, [{ sales_count: 4, voided_count: 2, revenue: 250 * (3 + 5) }]);
  });

  /**
   * A store with an offline sale of three days ago synced now, and that day
   * rolled up (`rolledUp`) or not. Returns the shop, the day, and the synced sale.
   */
  async function shopWithOldDay(rolledUp: boolean): Promise<{ shop: Shop; day: string; saleId: string }> {
    const { tenantId, owner } = await t.newTenant();
    const storeId = await givenStore(owner, `O${randomUUID().slice(0, 6)}`);
    const skuId = await givenSku(owner, `K${randomUUID().slice(0, 6)}`, 'piece', 250);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 100 }]);
    const now = new Date();
    const tillTime = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 3, 9)).toISOString();
    const day = tillTime.slice(0, 10);
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', client_created_at: tillTime, items: [{ sku_id: skuId, quantity: 1, unit_price: 250 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    if (rolledUp) await rollupDay(tenantId, day);
    return { shop: { tenantId, owner, storeId, skuId, sales: [] }, day, saleId: synced.body.results[0].body.id };
  }

  async function rollupDay(tenantId: string, day: string): Promise<void> {
    const input = { tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `rollup-${randomUUID()}`, fingerprint: 'rollup' };
    const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, day) }));
    assert.equal(outcome.status, 200);
  }

  /** The sale was synced `hours` ago (its till time, and so its day, unchanged). */
  async function syncedHoursAgo(shop: Shop, saleId: string, hours: number): Promise<void> {
    await asSuperuser(`UPDATE sales SET created_at = now() - make_interval(hours => $3) WHERE tenant_id = $1 AND id = $2`, [shop.tenantId, saleId, hours]);
  }

  it('daily_sales_rollup_stale: a sale synced for a day after its figures, and no run since for longer than the grace', async () => {
    const { shop, day, saleId } = await shopWithOldDay(true);
    // Given figures computed 30 hours ago and a sale of that day synced 27 hours ago (after them, before the last runs were due)
    const { saleId: late } = await (async () => {
      const synced = await shop.owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: shop.storeId, payment_method: 'cash', client_created_at: `${day}T10:00:00Z`, items: [{ sku_id: shop.skuId, quantity: 2, unit_price: 250 }] }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
      return { saleId: synced.body.results[0].body.id as string };
    })();
    await syncedHoursAgo(shop, saleId, 31);
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = now() - interval '30 hours' WHERE tenant_id = $1`, [shop.tenantId]);
    await syncedHoursAgo(shop, late, 27);
    // Then the stale figures are reported, by that check alone
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_stale']);
    const run = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 600 }, testCheckLog);
    const [finding] = run.findings.filter((f) => f.tenant_id === shop.tenantId);
    assert.equal(finding?.subject, `${shop.storeId}/${day}`);
    // And recomputed, they are not
    await rollupDay(shop.tenantId, day);
    assert.deepEqual(await reported(shop), []);
  });

  it('daily_sales_rollup_stale: a void of an old sale after its figures, left longer than the grace', async () => {
    const { shop, saleId } = await shopWithOldDay(true);
    await syncedHoursAgo(shop, saleId, 31);
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = now() - interval '30 hours' WHERE tenant_id = $1`, [shop.tenantId]);
    assert.equal((await shop.owner.post(`/v1/sales/${saleId}/void`, { reason: 'late' }, { idempotencyKey: randomUUID() })).status, 200);
    assert.deepEqual(await reported(shop), [], 'a fresh void is not a finding');
    // The void was recorded 27 hours ago, and its money booked on its store's day then, as it would have been
    // (moving only voided_at left the entry on today's date: two days after it from 00:00 to 03:00 UTC, which
    // money_sale_posted rightly reported)
    await withTriggersOff(t.admin, [
      [`UPDATE sales SET voided_at = now() - interval '27 hours' WHERE tenant_id = $1 AND id = $2`, [shop.tenantId, saleId]],
      [
        `UPDATE journal_entries e SET business_date = ((now() - interval '27 hours') AT TIME ZONE st.time_zone)::date
         FROM stores st WHERE e.tenant_id = $1 AND e.subject_id = $2 AND e.kind = 'sale_void' AND st.tenant_id = e.tenant_id AND st.id = e.store_id`,
        [shop.tenantId, saleId],
      ],
    ]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_stale']);
  });

  it('daily_sales_rollup_stale: a day with sales older than the grace and no figures at all', async () => {
    const { shop, saleId } = await shopWithOldDay(false);
    await syncedHoursAgo(shop, saleId, 27);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_stale']);
  });

  it('a change since the figures that is younger than the grace is not a finding (the next scheduled run is due to recompute it)', async () => {
    const { shop, day, saleId } = await shopWithOldDay(true);
    await syncedHoursAgo(shop, saleId, 31);
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = now() - interval '30 hours' WHERE tenant_id = $1`, [shop.tenantId]);
    const synced = await shop.owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: shop.storeId, payment_method: 'cash', client_created_at: `${day}T10:00:00Z`, items: [{ sku_id: shop.skuId, quantity: 2, unit_price: 250 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    // Synced now, and synced 20 hours ago: both within the grace
    assert.deepEqual(await reported(shop), []);
    await syncedHoursAgo(shop, synced.body.results[0].body.id, 20);
    assert.deepEqual(await reported(shop), []);
  });

  it('daily_sales_rollup_present: figures the catch-up wrote for a day with sales older than the grace, since gone (the day has sales and no figures)', async () => {
    const { shop, day, saleId } = await shopWithOldDay(false);
    await syncedHoursAgo(shop, saleId, 27);
    const input = { tenantId: shop.tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `catch-up-${randomUUID()}`, fingerprint: 'catch-up' };
    const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) }));
    assert.deepEqual((outcome.body as { days: string[] }).days, [day]);
    assert.deepEqual(await reported(shop), [], 'caught up: nothing to report');
    await asSuperuser(`DELETE FROM daily_sales_rollups WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_present']);
  });

  /**
   * daily_sales_rollup_present as it was: every sale of the caught-up tenants
   * against its store-day's figures — kept here as the full recomputation the
   * check is compared with.
   */
  const PRESENT_BY_EVERY_SALE = `
    SELECT s.tenant_id, s.store_id::text || '/' || d.business_date::text AS subject,
           jsonb_build_object('store_id', s.store_id, 'business_date', d.business_date, 'sales', count(*),
                              'changes_through', p.changes_through) AS detail
    FROM daily_sales_rollup_progress p
    JOIN sales s ON s.tenant_id = p.tenant_id
    JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
    CROSS JOIN LATERAL (SELECT ${SALE_DAY} AS business_date) d
    WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
      AND p.sale_day_rule >= ${SALE_DAY_RULE}
      AND (s.created_xid IS NULL OR pg_visible_in_snapshot(s.created_xid, p.changes_snapshot))
      AND NOT EXISTS (SELECT 1 FROM daily_sales_rollups r
                      WHERE r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.business_date = d.business_date)
    GROUP BY s.tenant_id, s.store_id, d.business_date, p.changes_through`;

  it('daily_sales_rollup_present reads the store-days of the history, not its sales: a day\'s figures gone are still found, as a pass over every sale finds them', async () => {
    // Given a store with 30 days of 40 sales (written straight into the tables, with their `sale` entries), a sale without money on a
    // day of its own (D-40) and one on D-10, caught up
    const DAYS = 30;
    const PER_DAY = 40;
    const { tenantId, owner } = await t.newTenant();
    const storeId = await givenStore(owner, `H${randomUUID().slice(0, 6)}`);
    const opId = (await t.admin.query(`SELECT op_id FROM stores WHERE tenant_id = $1 AND id = $2`, [tenantId, storeId])).rows[0].op_id;
    await withTriggersOff(t.admin, [
      [
        `WITH sale AS (
           INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, total, op_id, created_at)
           SELECT $1, gen_random_uuid(), $2, n, 'cash', 100 + n % 900, $3,
                  date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => $4::int + 1 - (n - 1) / $5::int)
                    + make_interval(secs => 8 * 3600 + ((n - 1) % $5::int) * 600)
           FROM generate_series(1, $4::int * $5::int) n
           RETURNING tenant_id, id, store_id, op_id, created_at
         )
         INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id, created_at)
         SELECT tenant_id, gen_random_uuid(), 'sale', store_id, (created_at AT TIME ZONE 'UTC')::date, 'sale', id, op_id, created_at FROM sale`,
        [tenantId, storeId, opId, DAYS, PER_DAY],
      ],
      [
        `INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, total, op_id, created_at)
         VALUES ($1, gen_random_uuid(), $2, $4::int + 1, 'cash', 0, $3, now() - interval '40 days'),
                ($1, gen_random_uuid(), $2, $4::int + 2, 'cash', 0, $3, now() - interval '10 days')`,
        [tenantId, storeId, opId, DAYS * PER_DAY],
      ],
      [
        `INSERT INTO store_receipt_counters (tenant_id, store_id, last_number) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, store_id) DO UPDATE SET last_number = EXCLUDED.last_number`,
        [tenantId, storeId, DAYS * PER_DAY + 2],
      ],
    ]);
    await t.admin.query('ANALYZE sales, journal_entries, daily_sales_rollups');
    const input = { tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `catch-up-${randomUUID()}`, fingerprint: 'catch-up' };
    const caughtUp = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) }));
    assert.equal((caughtUp.body as { days: string[] }).days.length, DAYS + 1);
    // and sales made since, which the catch-up has not seen (daily_sales_rollup_stale's, not this check's)
    const skuId = await givenSku(owner, `K${randomUUID().slice(0, 6)}`, 'piece', 250);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 10 }]);
    for (let i = 0; i < 2; i++) {
      const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 1, unit_price: 250 }] }, { idempotencyKey: randomUUID() });
      assert.equal(sale.status, 201, JSON.stringify(sale.body));
    }
    const check = allChecks.find((candidate) => candidate.name === 'daily_sales_rollup_present')!;

    /** The check's findings for the tenant, and the rows of `sales` its plan read — as the owner (every tenant's run) and as the app role (GET /v1/integrity). */
    const run = async (text: string, asApp: boolean) => {
      const client = await (asApp ? t.appPool : t.admin).connect();
      try {
        await client.query('BEGIN');
        if (asApp) await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
        const findings = (await client.query(`SELECT tenant_id, subject, detail FROM (${text}) f ORDER BY subject`, [tenantId])).rows;
        const plan = (await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, [tenantId])).rows[0]['QUERY PLAN'][0].Plan as PlanNode;
        await client.query('COMMIT');
        const readOf = (relation: string) =>
          nodesOf(plan)
            .filter((node) => node['Relation Name'] === relation)
            .reduce((sum, node) => sum + ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1), 0);
        return { findings, read: readOf('sales'), entriesRead: readOf('journal_entries') };
      } finally {
        client.release();
      }
    };
    const expectSameAsEverySale = async (bound: number, label: string) => {
      for (const asApp of [false, true]) {
        const now = await run(check.sql, asApp);
        const full = await run(PRESENT_BY_EVERY_SALE, asApp);
        const who = `${label}, as ${asApp ? 'the app role' : 'the owner'}`;
        assert.deepEqual(now.findings, full.findings, who);
        assert.ok(full.read >= DAYS * PER_DAY, `${who}: the pass over every sale read ${full.read}`);
        assert.ok(now.read <= bound, `${who}: the check read ${now.read} sales (bound ${bound}; every sale: ${full.read})`);
        // the store-days walked (an entry a booked day, and the last probe's none), then for each sale read: its entry
        // on the day, and its day looked up by its entry (SALE_DAY, evaluated twice) — where every sale's day was looked up
        assert.ok(now.entriesRead <= DAYS + 2 + 3 * bound, `${who}: the check read ${now.entriesRead} journal entries (every sale's: ${full.entriesRead})`);
      }
      return (await run(check.sql, false)).findings;
    };

    // Then caught up, nothing is found, and only the two sales without money and today's two (not seen yet: not this check's) are read — not the 1,200
    assert.deepEqual(await expectSameAsEverySale(2 + 2, 'caught up'), []);
    // When the figures of three days are gone — one with sales booked, the day of the lone sale without money, the other day's that has both
    const gone = [-20, -40, -10].map((offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10));
    await asSuperuser(`DELETE FROM daily_sales_rollups WHERE tenant_id = $1 AND business_date = ANY($2::date[])`, [tenantId, gone]);
    // Then each is found, as the pass over every sale finds it, reading only the sales of the two booked days and those without money
    const found = await expectSameAsEverySale(2 * PER_DAY + 2 + 2, 'three days gone');
    assert.deepEqual(
      found.map((finding) => finding.subject),
      [...gone].sort().map((day) => `${storeId}/${day}`),
    );
    // — and by the checker's run (the history written here has no items or postings: other checks' findings, not looked at)
    const checked = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 600 }, testCheckLog);
    assert.deepEqual(
      checked.findings.filter((finding) => finding.tenant_id === tenantId && finding.check === 'daily_sales_rollup_present').map((finding) => finding.subject).sort(),
      [...gone].sort().map((day) => `${storeId}/${day}`),
    );
  });

  it('figures of a store-day with no sale at all must be zeros', async () => {
    const shop = await newShop();
    await asSuperuser(
      `INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op, computed_at)
       SELECT tenant_id, gen_random_uuid(), store_id, business_date - 1, 1, 0, 250, op_id, computed_by_op, computed_at FROM daily_sales_rollups WHERE tenant_id = $1`,
      [shop.tenantId],
    );
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
  });
});
