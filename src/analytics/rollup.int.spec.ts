import { encodeCursor, listAt } from '../http/schemas.js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { createLogger } from '../core/logger.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { waitFor } from '../../test/support/wait.js';
import { startWorker, type RunningWorker } from '../jobs/worker.js';
import { randomUUID } from 'node:crypto';
import { runCommand } from '../core/command.js';
import { sleep } from '../../test/support/wait.js';
import { rollupDailySales } from './rollupDailySales.js';
import { rollupDailySalesJob } from './rollupJob.js';
import { cronItems } from '../jobs/registry.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { capturingLogger } from '../../test/support/logs.js';
import { jobFailedWording } from '../jobs/runJob.js';

describe('daily sales rollup', () => {
  let t: TestApp;
  let worker: RunningWorker;
  const workerLog = capturingLogger('info');
  before(async () => {
    t = await startTestApp();
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), workerMetricsPort: 0 };
    worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger: workerLog.logger, tasks: [rollupDailySalesJob], cronItems: [], pollIntervalMs: 100 });
  });
  after(async () => {
    await worker.stop();
    await t.close();
  });

  it('rolls up a day per store, recomputes idempotently, and counts later voids', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'A', name: 'A' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const sell = async (quantity: number) => {
      const response = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity, unit_price: 300 }] });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      return response.body as { id: string; total: number };
    };
    const sales = [await sell(1), await sell(2), await sell(3)];
    const today = new Date().toISOString().slice(0, 10);
    const rollup = async () => {
      const before = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId])).rows[0].n;
      await t.admin.query(`SELECT graphile_worker.add_job('analytics.rollup', json_build_object('date', $1::text))`, [today]);
      await waitFor('the rollup', async () => {
        const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId]);
        return rows[0].n === before + 1;
      });
      return (await t.admin.query(`SELECT id, sales_count, voided_count, revenue FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows;
    };

    const [first] = await rollup();
    assert.equal(first.sales_count, 3);
    assert.equal(first.voided_count, 0);
    assert.equal(first.revenue, sales.reduce((sum, sale) => sum + sale.total, 0));

    // a void and another sale, then the same day again: one row, recomputed
    assert.equal((await owner.post(`/v1/sales/${sales[0]!.id}/void`, { reason: 'wrong item' })).status, 200);
    const fourth = await sell(4);
    const again = await rollup();
    assert.equal(again.length, 1);
    assert.equal(again[0].id, first.id);
    assert.equal(again[0].sales_count, 4);
    assert.equal(again[0].voided_count, 1);
    assert.equal(again[0].revenue, sales[1]!.total + sales[2]!.total + fourth.total);

    const read = await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=${today}&to=${today}`);
    assert.equal(read.status, 200);
    assert.deepEqual(
      read.body.items.map((item: Record<string, unknown>) => [item.business_date, item.sales_count, item.voided_count, item.revenue]),
      [[today, 4, 1, again[0].revenue]],
    );
    const bad = await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=${today}&to=2000-01-01`);
    assert.equal(bad.status, 400);
  });

  it('an offline sale rung up yesterday and synced today counts yesterday (as its money does); the run for the day it was synced redoes that earlier day', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'OFF', name: 'Offline' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'OFF-SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const now = new Date();
    const today = now.toISOString().slice(0, 10);
    const tillTime = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 1, 12)).toISOString();
    const yesterday = tillTime.slice(0, 10);
    const online = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 300 }] });
    assert.equal(online.status, 201);
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: 'till-1-0001', store_id: store, payment_method: 'cash', client_created_at: tillTime, items: [{ sku_id: sku, quantity: 2, unit_price: 300 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const ledger = (await t.admin.query(`SELECT business_date::text AS d, count(*)::int AS n FROM journal_entries WHERE tenant_id = $1 AND kind = 'sale' GROUP BY 1 ORDER BY 1`, [tenantId])).rows;
    assert.deepEqual(ledger, [{ d: yesterday, n: 1 }, { d: today, n: 1 }], 'the ledger books the offline sale on the till day');

    // The run for today (what the next night's cron runs) also redoes yesterday.
    const before = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId])).rows[0].n;
    await t.admin.query(`SELECT graphile_worker.add_job('analytics.rollup', json_build_object('date', $1::text))`, [today]);
    await waitFor('the rollup of both days', async () => {
      const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId]);
      return rows[0].n === before + 2;
    });
    const rows = (await t.admin.query(`SELECT business_date::text AS d, sales_count, revenue FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows;
    assert.deepEqual(rows, [
      { d: yesterday, sales_count: 1, revenue: 600 },
      { d: today, sales_count: 1, revenue: 300 },
    ]);
  });

  /** Enqueues the rollup as its schedule does (no `date`) and waits until the worker has done it. */
  async function scheduledRollup(): Promise<void> {
    const { rows } = await t.admin.query<{ id: string }>(`SELECT id::text FROM graphile_worker.add_job('analytics.rollup', '{}'::json)`);
    const jobId = rows[0]!.id;
    await waitFor('the scheduled rollup', async () => {
      const job = await t.admin.query(`SELECT last_error FROM graphile_worker._private_jobs WHERE id = $1`, [jobId]);
      if (job.rows[0]?.last_error) throw new Error(`the rollup failed: ${job.rows[0].last_error}`);
      return job.rows.length === 0;
    });
  }

  it('a rollup asked for a day that is not one ("2024-02-30", "yesterday") gives up at once with the reason, and rolls nothing up', async () => {
    for (const date of ['2024-02-30', 'yesterday']) {
      const operations = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE type = 'analytics.rollup'`)).rows[0].n as number;
      const before = await operations();
      const { rows } = await t.admin.query<{ id: string }>(`SELECT id::text FROM graphile_worker.add_job('analytics.rollup', json_build_object('date', $1::text))`, [date]);
      const item = await waitFor(`the give-up of the rollup for ${date}`, async () => {
        const found = await t.admin.query(`SELECT detail FROM review_items WHERE kind = 'job_failed' AND detail ->> 'task' = 'analytics.rollup' AND detail -> 'data' ->> 'date' = $1`, [date]);
        return found.rows[0]?.detail as { error: string; attempts: number; correlation_id: string } | undefined;
      });
      // The item says the job gave up for good and where its reason is; the reason is the log's (job_failed items hold no error text).
      assert.equal(item.error, jobFailedWording('analytics.rollup', 1, rollupDailySalesJob.maxAttempts ?? Number.NaN, 'permanent'), date);
      const logged = workerLog.lines.find((line) => line.level === 50 && line.correlation_id === item.correlation_id && JSON.stringify(line.err ?? '').includes('is not a day'));
      assert.ok(logged, `${date}: the reason is logged at error level under the item's correlation_id`);
      assert.equal(item.attempts, 1, `${date}: given up at its first attempt, not retried`);
      // The item is written in a transaction of its own before the queue drops the job: wait for that, not race it.
      await waitFor(`the job for ${date} to be dropped`, async () =>
        (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE id = $1`, [rows[0]!.id])).rows[0].n === 0,
      );
      assert.equal(await operations(), before, `${date}: nothing rolled up (not the scheduled catch-up either)`);
    }
  });

  it('a sale synced for an old day, and a void of an old sale, after that day was rolled up: the next scheduled run recomputes that day', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'LATE', name: 'Late till' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'LATE-SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const now = new Date();
    const tillTime = (hour: number) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 3, hour)).toISOString();
    const oldDay = tillTime(9).slice(0, 10);
    const sync = async (key: string, at: string, quantity: number) => {
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: key, store_id: store, payment_method: 'cash', client_created_at: at, items: [{ sku_id: sku, quantity, unit_price: 300 }] }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
      return synced.body.results[0].body as { id: string };
    };
    const figures = async () =>
      (await t.admin.query(`SELECT business_date::text AS d, sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows;
    // Given a sale of three days ago synced two days ago, that day rolled up by a scheduled run
    const first = await sync('late-till-0001', tillTime(9), 1);
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(`UPDATE sales SET created_at = now() - interval '2 days' WHERE id = $1`, [first.id]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await scheduledRollup();
    assert.deepEqual(await figures(), [{ d: oldDay, sales_count: 1, voided_count: 0, revenue: 300 }]);
    // When that sale is voided (a change found through the void, the sale itself is older than the last run)
    assert.equal((await owner.post(`/v1/sales/${first.id}/void`, { reason: 'late void' })).status, 200);
    // Then the next scheduled run (whatever day its tick is for) recomputes that day
    await scheduledRollup();
    assert.deepEqual(await figures(), [{ d: oldDay, sales_count: 1, voided_count: 1, revenue: 0 }]);
    // And when a till syncs another sale of that day, so does the run after
    await sync('late-till-0002', tillTime(10), 2);
    await scheduledRollup();
    assert.deepEqual(await figures(), [{ d: oldDay, sales_count: 2, voided_count: 1, revenue: 600 }]);
    // And a run with nothing new leaves the figures as they are
    await scheduledRollup();
    assert.deepEqual(await figures(), [{ d: oldDay, sales_count: 2, voided_count: 1, revenue: 600 }]);
    // And the progress row's watermark has seen every change (each sale's and each void's transaction)
    const progress = await t.admin.query(
      `SELECT bool_and(pg_visible_in_snapshot(s.created_xid, p.changes_snapshot) AND (s.voided_xid IS NULL OR pg_visible_in_snapshot(s.voided_xid, p.changes_snapshot))) AS seen,
              count(*)::int AS sales, count(s.voided_xid)::int AS voids
       FROM daily_sales_rollup_progress p JOIN sales s ON s.tenant_id = p.tenant_id WHERE p.tenant_id = $1 GROUP BY p.tenant_id`,
      [tenantId],
    );
    assert.deepEqual(progress.rows, [{ seen: true, sales: 2, voids: 1 }]);
  });

  it('a run with a `date` rolls up again the days of the sales partly returned that day, as of those recorded or voided that day', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'RET', name: 'Returns' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'RET-SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const now = new Date();
    const day = (back: number) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - back, 9)).toISOString();
    const [oldDay, recordedDay, today] = [day(3).slice(0, 10), day(2).slice(0, 10), now.toISOString().slice(0, 10)];
    // Given a sale of three days ago synced two days ago
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: 'ret-till-0001', store_id: store, payment_method: 'cash', client_created_at: day(3), items: [{ sku_id: sku, quantity: 4, unit_price: 300 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const sale = synced.body.results[0].body as { id: string };
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(`UPDATE sales SET created_at = now() - interval '2 days' WHERE id = $1`, [sale.id]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const datedRun = async (date: string) => {
      const before = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId])).rows[0].n;
      await t.admin.query(`SELECT graphile_worker.add_job('analytics.rollup', json_build_object('date', $1::text))`, [date]);
      await waitFor(`the rollup for ${date}`, async () => {
        const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId]);
        return rows[0].n === before + 1;
      });
      return (await t.admin.query(`SELECT business_date::text AS d, sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows;
    };
    // the run for the day it was recorded rolls up its day
    assert.deepEqual(await datedRun(recordedDay), [{ d: oldDay, sales_count: 1, voided_count: 0, revenue: 1200 }]);
    // When one is brought back today
    const returned = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: sku, quantity: 1 }], reason: 'one back' }, { idempotencyKey: randomUUID() });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    // Then the run for today rolls up the sale's day again, net of the return
    assert.deepEqual(await datedRun(today), [{ d: oldDay, sales_count: 1, voided_count: 0, revenue: 900 }]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a sale whose money is booked after its day (that day counted, or rung up after today's count) counts on the day its money is booked, so a day's figures agree with its sale entries", async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'CNT', name: 'Counted' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'CNT-SALT', name: 'Salt', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const { rows: [d] } = await t.admin.query(
      `SELECT to_char(x, 'YYYY-MM-DD') AS today, to_char(x - 1, 'YYYY-MM-DD') AS yesterday, to_char(x + 1, 'YYYY-MM-DD') AS tomorrow,
              to_char(x - 3, 'YYYY-MM-DD') AS "threeDaysAgo" FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS x) y`,
    );
    const count = async (day: string) => {
      const counted = await owner.post('/v1/settlements', { store_id: store, business_date: day, declared_cash: 0 }, { idempotencyKey: randomUUID() });
      assert.equal(counted.status, 201, JSON.stringify(counted.body));
    };
    const sync = async (key: string, at: string, quantity: number) => {
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: key, store_id: store, payment_method: 'cash', client_created_at: at, items: [{ sku_id: sku, quantity, unit_price: 100 }] }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    };
    // Given yesterday was counted, then a till syncs a sale it rang up yesterday at 18:00 (its money: today, the first day not counted)
    await count(d.yesterday);
    await sync('counted-till-1', `${d.yesterday}T18:00:00Z`, 1);
    // and today is counted, then a sale is rung up (its money: tomorrow) and a till syncs a sale of three days ago (tomorrow too)
    await count(d.today);
    const late = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 2, unit_price: 100 }] });
    assert.equal(late.status, 201);
    await sync('counted-till-2', `${d.threeDaysAgo}T09:00:00Z`, 4);
    const revenueEntries = (
      await t.admin.query(
        `SELECT to_char(e.business_date, 'YYYY-MM-DD') AS d, count(*)::int AS sales_count, (-sum(p.amount))::int AS revenue
         FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
         JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id AND a.kind = 'sales_revenue'
         WHERE e.tenant_id = $1 AND e.kind = 'sale' GROUP BY 1 ORDER BY 1`,
        [tenantId],
      )
    ).rows;
    assert.deepEqual(revenueEntries, [
      { d: d.today, sales_count: 1, revenue: 100 },
      { d: d.tomorrow, sales_count: 2, revenue: 600 },
    ], 'the money of each sale is booked on the first day not counted');
    // When the schedule rolls the figures up
    await scheduledRollup();
    // Then each sale counts on the day its money is booked on, and the figures read agree with the sale entries
    const read = await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=${d.threeDaysAgo}&to=${d.tomorrow}`);
    assert.equal(read.status, 200);
    assert.deepEqual(
      read.body.items
        .filter((item: { sales_count: number }) => item.sales_count > 0)
        .map((item: { business_date: string; sales_count: number; revenue: number }) => ({ d: item.business_date, sales_count: item.sales_count, revenue: item.revenue })),
      revenueEntries,
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales', 'daily_sales_rollup_stale']), []);
  });

  it('figures computed before a sale counted on its money\'s day (a sale synced after its day was counted, counted on its till day) are put right by the next scheduled run, though nothing changed since', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'OLDRULE', name: 'Old rule' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'OLDRULE-SALT', name: 'Salt', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const { rows: [d] } = await t.admin.query(
      `SELECT to_char(x, 'YYYY-MM-DD') AS today, to_char(x - 1, 'YYYY-MM-DD') AS yesterday FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS x) y`,
    );
    // Given yesterday counted, then a sale of yesterday synced (its money: today)
    const counted = await owner.post('/v1/settlements', { store_id: store, business_date: d.yesterday, declared_cash: 0 }, { idempotencyKey: randomUUID() });
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: 'old-rule-1', store_id: store, payment_method: 'cash', client_created_at: `${d.yesterday}T18:00:00Z`, items: [{ sku_id: sku, quantity: 3, unit_price: 100 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    // and the figures (and the tenant's progress) as a run under the rule before left them, after the sale: counted on its till day
    await t.admin.query(
      `INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op, computed_at)
       VALUES ($1, gen_random_uuid(), $2, $3, 1, 0, 300, $4, $4, now() + interval '10 minutes')`,
      [tenantId, store, d.yesterday, synced.body.results[0].body.op_id],
    );
    await t.admin.query(
      `INSERT INTO daily_sales_rollup_progress (tenant_id, changes_through, op_id, updated_by_op) VALUES ($1, now() + interval '1 minute', $2, $2)`,
      [tenantId, synced.body.results[0].body.op_id],
    );
    // When the schedule runs (no change since its last run)
    await scheduledRollup();
    // Then the sale counts today, with its money, and yesterday holds none
    const rows = (await t.admin.query(`SELECT business_date::text AS d, sales_count, revenue FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows;
    assert.deepEqual(rows, [
      { d: d.yesterday, sales_count: 0, revenue: 0 },
      { d: d.today, sales_count: 1, revenue: 300 },
    ]);
    // and a run after that, with nothing new, recomputes nothing
    const before = (await t.admin.query(`SELECT max(computed_at) AS at FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows[0].at;
    await scheduledRollup();
    const after = (await t.admin.query(`SELECT max(computed_at) AS at FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows[0].at;
    assert.deepEqual(after, before);
  });

  it("offline sales voided on later days (a queued void with its till time, one without): the sales' day loses them in the figures, the voids' days in the revenue account", async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'VOIDS', name: 'Voids' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'VOIDS-SALT', name: 'Salt', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const { rows: [d] } = await t.admin.query(
      `SELECT to_char(x, 'YYYY-MM-DD') AS today, to_char(x - 1, 'YYYY-MM-DD') AS yesterday, to_char(x - 2, 'YYYY-MM-DD') AS "twoDaysAgo"
       FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS x) y`,
    );
    const synced = await owner.post('/v1/sync/sales', {
      sales: [1, 2, 3].map((quantity) => ({
        idempotency_key: `voids-${quantity}`, store_id: store, payment_method: 'cash', client_created_at: `${d.twoDaysAgo}T10:0${quantity}:00Z`,
        items: [{ sku_id: sku, quantity, unit_price: 100 }],
      })),
    });
    const [one, two] = synced.body.results.map((result: { status: number; body: { id: string } }) => {
      assert.equal(result.status, 201);
      return result.body.id;
    });
    // Given the first voided by a till yesterday (queued, synced now), the second voided now
    assert.equal((await owner.post(`/v1/sales/${one}/void`, { reason: 'queued', client_created_at: `${d.yesterday}T09:00:00Z` })).status, 200);
    assert.equal((await owner.post(`/v1/sales/${two}/void`, { reason: 'now' })).status, 200);
    await scheduledRollup();
    // Then the figures: two days ago had three sales, two voided, 300 still sold; no figures on the voids' days
    const read = await owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=${d.twoDaysAgo}&to=${d.today}&limit=1`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.items.map((item: Record<string, unknown>) => [item.business_date, item.sales_count, item.voided_count, item.revenue]), [[d.twoDaysAgo, 3, 2, 300]]);
    assert.equal(read.body.next_cursor, null);
    // And the revenue account: the sales two days ago, each void on its own day
    const revenue = (
      await t.admin.query(
        `SELECT to_char(e.business_date, 'YYYY-MM-DD') AS d, e.kind, (-sum(p.amount))::int AS revenue
         FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
         JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id AND a.kind = 'sales_revenue'
         WHERE e.tenant_id = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
        [tenantId],
      )
    ).rows;
    assert.deepEqual(revenue, [
      { d: d.twoDaysAgo, kind: 'sale', revenue: 600 },
      { d: d.yesterday, kind: 'sale_void', revenue: -100 },
      { d: d.today, kind: 'sale_void', revenue: -200 },
    ]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales', 'money_sale_posted']), []);
  });

  it('a change the runs never looked at (no worker for longer than the backfill) is caught up by the next scheduled run', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'DOWN', name: 'Worker down' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'DOWN-SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 2, unit_price: 300 }] });
    assert.equal(sale.status, 201);
    // Given a sale recorded twelve days ago that no run has rolled up
    const twelveDaysAgo = new Date(Date.now() - 12 * 86_400_000);
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query('UPDATE sales SET created_at = $1 WHERE id = $2', [twelveDaysAgo, sale.body.id]);
      // its money booked that day too, as it was when recorded then
      await client.query(`UPDATE journal_entries SET business_date = ($1::timestamptz AT TIME ZONE 'UTC')::date WHERE subject_id = $2 AND kind = 'sale'`, [twelveDaysAgo, sale.body.id]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    // When the schedule runs
    await scheduledRollup();
    // Then that day has its figures
    const rows = (await t.admin.query(`SELECT business_date::text AS d, sales_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows;
    assert.deepEqual(rows, [{ d: twelveDaysAgo.toISOString().slice(0, 10), sales_count: 1, revenue: 600 }]);
  });

  it("a sale of total 0 synced with a till time early on 0001-01-01 in UTC, in a store west of UTC (its day: 31 December of 1 BC), counts on 0001-01-01, as a sale with money books there", async () => {
    const { tenantId, owner } = await t.newTenant();
    const west = (await owner.post('/v1/stores', { code: 'WEST', name: 'West', time_zone: 'America/New_York' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'FREE', name: 'Sample', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${west}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] })).status, 201);
    // Given a free sample given out by a till whose clock was reset to the first moment of year 0001 (UTC)
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: west, payment_method: 'cash', client_created_at: '0001-01-01T00:00:00Z', items: [{ sku_id: sku, quantity: 1, unit_price: 0 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    // When the schedule runs
    await scheduledRollup();
    // Then the sale is counted on 0001-01-01 (never a day before the first the API can name), listed there, and the checks find nothing
    const rows = (await t.admin.query(`SELECT business_date::text AS d, sales_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows;
    assert.deepEqual(rows, [{ d: '0001-01-01', sales_count: 1, revenue: 0 }]);
    const listed = await owner.get(`/v1/analytics/daily-sales?store_id=${west}&from=0001-01-01&to=0001-01-31`);
    assert.deepEqual(listed.body.items.map((item: { business_date: string; sales_count: number }) => [item.business_date, item.sales_count]), [['0001-01-01', 1]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('an online sale that names a till time counts on the day it was recorded, as its money does; a re-run clears a store-day left with no sales', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'ON', name: 'Online' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'ON-SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 100 }] })).status, 201);
    const now = new Date();
    const today = now.toISOString().slice(0, 10);
    const tillTime = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 3, 12)).toISOString();
    const tillDay = tillTime.slice(0, 10);
    // Given an online sale (POST /v1/sales, not a sync) whose till names a time three days ago
    const online = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', client_created_at: tillTime, items: [{ sku_id: sku, quantity: 2, unit_price: 300 }] });
    assert.equal(online.status, 201, JSON.stringify(online.body));
    assert.equal(online.body.source, 'online');
    // Its money is today's (only an offline sale is booked on its till day)
    const ledger = (await t.admin.query(`SELECT business_date::text AS d FROM journal_entries WHERE tenant_id = $1 AND kind = 'sale'`, [tenantId])).rows;
    assert.deepEqual(ledger, [{ d: today }]);
    // And figures left for the till day by an earlier computation (the rule before this fix counted the sale there)
    await t.admin.query(
      `INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op)
       VALUES ($1, gen_random_uuid(), $2, $3, 1, 0, 600, $4, $4)`,
      [tenantId, store, tillDay, online.body.op_id],
    );
    // When the nightly run for today goes through (the job rolls up the days its sales happened on)
    const before = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId])).rows[0].n;
    await t.admin.query(`SELECT graphile_worker.add_job('analytics.rollup', json_build_object('date', $1::text))`, [today]);
    await waitFor('the rollup of today', async () => {
      const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'analytics.rollup'`, [tenantId]);
      return rows[0].n === before + 1;
    });
    // And the till day is rolled up again
    const again = await runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
      { type: 'analytics.rollup' },
      async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, tillDay) }),
    );
    assert.equal(again.status, 200);
    // Then the sale counts today, with its money, and the till day holds no sale of the store
    const rows = (await t.admin.query(`SELECT business_date::text AS d, sales_count, voided_count, revenue FROM daily_sales_rollups WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows;
    assert.deepEqual(rows, [
      { d: tillDay, sales_count: 0, voided_count: 0, revenue: 0 },
      { d: today, sales_count: 1, voided_count: 0, revenue: 600 },
    ]);
  });

  it('two runs for one tenant-day at once: the run that read the older sales never writes over the newer figures', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'R', name: 'R' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'RACE', name: 'Race', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] })).status, 201);
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] });
    assert.equal(sale.status, 201);
    const today = new Date().toISOString().slice(0, 10);
    const run = () =>
      runCommand(
        t.db,
        { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
        { type: 'analytics.rollup' },
        async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, today) }),
      );
    // Given the first run to write is held for a moment just before it writes
    // (a slow run: a big day, a descheduled worker), i.e. after it has read the sales
    await t.admin.query(`
      CREATE FUNCTION rollup_slow_once_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.tenant_id = '${tenantId}' AND pg_try_advisory_xact_lock(424242) THEN PERFORM pg_sleep(1.5); END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER rollup_slow_once_for_test BEFORE INSERT ON daily_sales_rollups FOR EACH ROW EXECUTE FUNCTION rollup_slow_once_for_test();`);
    try {
      const first = run();
      await sleep(400);
      // When the sale is voided meanwhile and a second run rolls the day up
      assert.equal((await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'race' })).status, 200);
      const second = run();
      await Promise.all([first, second]);
    } finally {
      await t.admin.query('DROP TRIGGER rollup_slow_once_for_test ON daily_sales_rollups; DROP FUNCTION rollup_slow_once_for_test()');
    }
    // Then the day's row counts the void: what the sales say now
    const rows = (await t.admin.query(`SELECT sales_count, voided_count, revenue FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows;
    assert.deepEqual(rows, [{ sales_count: 1, voided_count: 1, revenue: 0 }]);
  });

  it('a night the worker missed (down, restarting at 00:20) is rolled up when it starts again: the backfilled tick catches up the days changed since the last run', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'MISS', name: 'Missed night' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'MISS-SALT', name: 'Salt', unit: 'piece', price: 300 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] })).status, 201);
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 2, unit_price: 300 }] });
    assert.equal(sale.status, 201);
    // Given a sale recorded at noon two days ago (UTC)...
    const now = new Date();
    const twoDaysAgo = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 2, 12));
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query('UPDATE sales SET created_at = $1 WHERE id = $2', [twoDaysAgo, sale.body.id]);
      // its money booked that day too, as it was when recorded then
      await client.query(`UPDATE journal_entries SET business_date = ($1::timestamptz AT TIME ZONE 'UTC')::date WHERE subject_id = $2 AND kind = 'sale'`, [twoDaysAgo, sale.body.id]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    // ...and the nightly rollup last scheduled three days ago: the worker was down through the nights since.
    await t.admin.query(
      `INSERT INTO graphile_worker._private_known_crontabs (identifier, known_since, last_execution)
       VALUES ('analytics.rollup', now() - interval '3 days', now() - interval '3 days')
       ON CONFLICT (identifier) DO UPDATE SET known_since = EXCLUDED.known_since, last_execution = EXCLUDED.last_execution`,
    );
    // When a worker with the shipped schedule starts again
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), workerMetricsPort: 0 };
    const restarted = await startWorker({
      databaseUrl: t.url,
      appDatabaseUrl: t.appUrl,
      config,
      logger: createLogger('silent'),
      tasks: [rollupDailySalesJob],
      cronItems: cronItems.filter((item) => item.task === 'analytics.rollup'),
      pollIntervalMs: 100,
    });
    try {
      // Then the day of that sale is rolled up by the tick it missed
      const day = twoDaysAgo.toISOString().slice(0, 10);
      await waitFor(`the rollup of ${day}`, async () => {
        const { rows } = await t.admin.query(`SELECT 1 FROM daily_sales_rollups WHERE tenant_id = $1 AND business_date = $2`, [tenantId, day]);
        return rows.length === 1;
      }, 15_000);
      const rows = (await t.admin.query(`SELECT business_date::text AS d, sales_count, revenue FROM daily_sales_rollups WHERE tenant_id = $1`, [tenantId])).rows;
      assert.deepEqual(rows, [{ d: day, sales_count: 1, revenue: 600 }]);
    } finally {
      await restarted.stop();
    }
  });

  it('daily-sales pages like every list (?limit=, ?cursor=, next_cursor), 50 days a page without a limit', async () => {
    const { tenantId, owner } = await t.newTenant();
    const created = await owner.post('/v1/stores', { code: 'PAGE', name: 'Paged' });
    const store = created.body.id;
    // Given: figures for ten days (rows as the nightly run leaves them).
    const days = Array.from({ length: 10 }, (_, i) => `2026-03-${String(i + 1).padStart(2, '0')}`);
    for (const [index, day] of days.entries()) {
      await t.admin.query(
        `INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7)`,
        [tenantId, randomUUID(), store, day, index + 1, (index + 1) * 100, created.body.op_id],
      );
    }
    const read = (query: string) => owner.get(`/v1/analytics/daily-sales?store_id=${store}&from=2026-03-01&to=2026-03-31${query}`);
    const whole = await read('');
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body.items.map((item: { business_date: string }) => item.business_date), days);
    assert.equal(whole.body.next_cursor, null);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await read(`&limit=4${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.ok(page.body.items.length <= 4);
      seen.push(...page.body.items.map((item: { business_date: string; sales_count: number }) => item.business_date));
      cursor = page.body.next_cursor;
      pages += 1;
    } while (cursor !== null);
    assert.deepEqual(seen, days);
    assert.equal(pages, 3);
    for (const query of ['&limit=0', '&limit=501', '&cursor=', '&cursor=bm90LWEtY3Vyc29y', `&cursor=${encodeCursor({ after: '2026-02-30' }, listAt('/v1/analytics/daily-sales'))}`]) {
      const bad = await read(query);
      assert.equal(bad.status, 400, query);
      assert.equal(bad.body.code, 'validation_failed');
    }
  });
});
