/** Attempt budgets that hold: order recovery gives up, a dead submit job is replaced, crashed runs count. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig, type Config } from '../config.js';
import { createLogger } from '../core/logger.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { startWorker, type RunningWorker } from './worker.js';
import { startProviderSim, type ProviderSim } from '../providerSim/providerSim.js';
import { submitJobKey } from '../orders/createOrder.js';
import { recoverOrder, sweepStuckOrders } from '../orders/recoverOrderJob.js';
import { submitOrder } from '../orders/submitOrderJob.js';
import { defineTask } from './task.js';
import { newOrderShop, orderBody, statusOf, WEBHOOK_SECRET } from '../orders/testkit.js';

describe('job attempt budgets: order recovery and crashed runs', () => {
  let t: TestApp;
  let sim: ProviderSim;
  let worker: RunningWorker | undefined;
  const base: Partial<Config> = { fulfilmentTimeoutMs: 300, ordersStuckAfterSeconds: 1, workerMetricsPort: 0 };
  before(async () => {
    sim = await startProviderSim({ secret: WEBHOOK_SECRET });
    Object.assign(base, { fulfilmentUrl: sim.url, fulfilmentWebhookSecret: WEBHOOK_SECRET });
    t = await startTestApp(base);
    sim.webhookUrl = `${t.baseUrl}/v1/webhooks/fulfilment`;
  });
  after(async () => {
    await worker?.stop();
    await sim.stop();
    await t.close();
  });
  const start = (overrides: Partial<Config>, tasks = [submitOrder, recoverOrder, sweepStuckOrders]) =>
    startWorker({
      databaseUrl: t.url,
      appDatabaseUrl: t.appUrl,
      config: { ...loadConfig({ LOG_LEVEL: 'silent' }), ...base, ...overrides },
      logger: createLogger('silent'),
      tasks,
      cronItems: [],
      pollIntervalMs: 100,
    });

  it('order.recover gives up after JOB_MAX_ATTEMPTS when the provider lookup keeps failing (the sweep must not reset its attempt count)', async () => {
    // Given an order stuck in `submitting` and a provider whose lookup always fails (unreachable)
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    await t.admin.query(`DELETE FROM graphile_worker._private_jobs WHERE key = $1`, [submitJobKey(orderId)]);
    await t.admin.query(`ALTER TABLE orders DISABLE TRIGGER USER`).catch(() => undefined);
    await t.admin.query(`UPDATE orders SET status = 'submitting', status_changed_at = now() - interval '1 hour' WHERE id = $1`, [orderId]);
    await t.admin.query(`ALTER TABLE orders ENABLE TRIGGER USER`).catch(() => undefined);
    // When the worker sweeps (every 0.5 s) and recovers with 3 attempts, retries 1–2 s apart
    worker = await start({ fulfilmentUrl: 'http://127.0.0.1:9', jobMaxAttempts: 3, jobRetryBaseMs: 2000, jobRetryMaxMs: 2000 }, [recoverOrder, sweepStuckOrders]);
    const seen: number[] = [];
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const row = (await t.admin.query(`SELECT payload FROM graphile_worker._private_jobs WHERE key = $1`, [`order.recover:${orderId}`])).rows[0];
      if (row) seen.push(Number(row.payload.attempt));
      await sleep(100);
    }
    await worker.stop();
    worker = undefined;
    // Then within 15 s (3 attempts need < 5 s) the recovery chain gave up once with a job_failed review item
    const failed = (
      await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE tenant_id = $1 AND kind = 'job_failed' AND detail->>'task' = 'order.recover'`, [shop.tenantId])
    ).rows[0].n;
    assert.ok(failed >= 1, `no job_failed review item for order.recover after 15 s; attempt numbers seen on the waiting recover job: ${[...new Set(seen)].join(',')} (max ${Math.max(...seen)})`);
    // And the sweep's next recoveries of the order, giving up again while the provider stays away, share that one
    // open item (one per order, not one every few minutes for as long as the outage lasts)
    const giveUps = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'job.give_up'`, [shop.tenantId])).rows[0].n;
    assert.ok(giveUps >= 2, `the recovery gave up ${giveUps} time(s) in 15 s; the test needs at least 2`);
    const open = await t.admin.query(
      `SELECT subject_id, detail->>'order_id' AS order_id FROM review_items WHERE tenant_id = $1 AND kind = 'job_failed' AND status = 'open' AND detail->>'task' = 'order.recover'`,
      [shop.tenantId],
    );
    assert.equal(open.rows.length, 1, `open job_failed items for the order's recovery: ${JSON.stringify(open.rows)}`);
  });

  it('a recovery re-submits a pending order whose submit job is dead in the queue (attempts exhausted), instead of keeping the dead job', async () => {
    // Given a pending order whose submit job graphile-worker gave up on (e.g. its retry could not be queued through a
    // database outage, CRASH_RERUNS times): the row stays in the queue, unlocked, attempts = max_attempts, with its key
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    const key = submitJobKey(orderId);
    const dead = await t.admin.query(
      `UPDATE graphile_worker._private_jobs SET attempts = max_attempts, last_error = 'could not schedule the retry' WHERE key = $1 RETURNING id`,
      [key],
    );
    assert.equal(dead.rowCount, 1);
    // When the worker (provider up) recovers it once it is stuck
    await sleep(1_200);
    worker = await start({ jobMaxAttempts: 4, jobRetryBaseMs: 20, jobRetryMaxMs: 100 });
    await waitFor('a recovery', async () => (await t.admin.query(`SELECT recoveries FROM orders WHERE id = $1`, [orderId])).rows[0].recoveries >= 1, 15_000, 100);
    // Then the order is submitted to the provider (not: recovered 3 times without any submit, then failed)
    let status: string | undefined;
    try {
      await waitFor('the order to reach the provider', async () => ['submitted', 'processing', 'completed', 'failed'].includes((status = await statusOf(t.admin, orderId)) ?? ''), 15_000, 100);
    } catch {
      // reported below
    }
    const order = (await t.admin.query(`SELECT status, recoveries, submit_attempts, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    const jobs = (await t.admin.query(`SELECT id, attempts, max_attempts, locked_at FROM graphile_worker._private_jobs WHERE key = $1`, [key])).rows;
    assert.ok(
      ['submitted', 'processing', 'completed'].includes(status ?? ''),
      `order never re-submitted: ${JSON.stringify(order)}; jobs with its submit key: ${JSON.stringify(jobs)}`,
    );
    await worker.stop();
    worker = undefined;
  });

  it('a run graphile-worker repeats after crashes does not run the handler past its attempt budget (crash loop bounded by maxAttempts)', async () => {
    // Given a job of a task limited to 2 attempts whose first attempt's runs already died 3 times mid-run
    // (kill -9 / OOM: graphile-worker counted attempts = 3 and, after the lock expired, offers it again)
    let runs = 0;
    const crashy = defineTask<Record<string, unknown>>({ name: 'test.crashy', maxAttempts: 2, async handle() { runs += 1; } });
    const envelope = { correlation_id: 'ops-crash-loop', tenant_id: null, attempt: 1, max_attempts: 2, chain_id: 'ops-crash-loop', data: {} };
    await t.admin.query(`SELECT graphile_worker.add_job('test.crashy', $1::json, max_attempts => 5)`, [JSON.stringify(envelope)]);
    await t.admin.query(`UPDATE graphile_worker._private_jobs SET attempts = 3, last_error = 'worker died mid-run' WHERE payload->>'chain_id' = 'ops-crash-loop'`);
    // When a worker takes it (this is run 4 = attempt 1 + 3 reruns, past the budget of 2)
    worker = await start({}, [crashy]);
    await waitFor('the job to leave the queue', async () => (await t.admin.query(`SELECT 1 FROM graphile_worker._private_jobs WHERE payload->>'chain_id' = 'ops-crash-loop'`)).rowCount === 0, 10_000, 100);
    await worker.stop();
    worker = undefined;
    // Then the handler did not run a 4th time: the budget was spent, the job is given up for review
    const items = (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE kind = 'job_failed' AND subject_id = 'ops-crash-loop'`)).rows[0].n;
    assert.equal(runs, 0, `handler ran ${runs} time(s) on a run counted as attempt 4 of 2; job_failed review items: ${items}`);
  });
});
