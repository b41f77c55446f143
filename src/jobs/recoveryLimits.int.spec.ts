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
import { CRASH_RERUNS } from './enqueueJob.js';
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
    const failedItems = async () =>
      (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE tenant_id = $1 AND kind = 'job_failed' AND detail->>'task' = 'order.recover'`, [shop.tenantId])).rows[0].n as number;
    const giveUpCount = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'job.give_up'`, [shop.tenantId])).rows[0].n as number;
    // (watched for up to 15 s: done as soon as it gave up twice — what the checks below need — instead of always 15 s)
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const row = (await t.admin.query(`SELECT payload FROM graphile_worker._private_jobs WHERE key = $1`, [`order.recover:${orderId}`])).rows[0];
      if (row) seen.push(Number(row.payload.attempt));
      if ((await giveUpCount()) >= 2) break;
      await sleep(100);
    }
    await worker.stop();
    worker = undefined;
    // Then within 15 s (3 attempts need < 5 s) the recovery chain gave up once with a job_failed review item
    const failed = await failedItems();
    assert.ok(failed >= 1, `no job_failed review item for order.recover after 15 s; attempt numbers seen on the waiting recover job: ${[...new Set(seen)].join(',')} (max ${Math.max(...seen)})`);
    // And the sweep's next recoveries of the order, giving up again while the provider stays away, share that one
    // open item (one per order, not one every few minutes for as long as the outage lasts)
    const giveUps = await giveUpCount();
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

  it('a job whose runs died as often as the queue re-runs a job (CRASH_RERUNS, below its attempt budget) is given up with a job_failed item, not left dead in the queue without one', async () => {
    // Given a task with the default budget of 8 attempts whose job's first attempt already died
    // mid-run 4 times (kill -9 / OOM): graphile-worker counted attempts = 4 of its max_attempts = 5
    let runs = 0;
    let release: () => void = () => undefined;
    const poison = defineTask<Record<string, unknown>>({
      name: 'test.poison',
      maxAttempts: 8,
      async handle() {
        runs += 1;
        // This run dies too: it never finishes on its own (the worker is stopped at once under it)
        await new Promise<void>((resolve) => (release = resolve));
      },
    });
    const envelope = { correlation_id: 'ops-poison', tenant_id: null, attempt: 1, max_attempts: 0, chain_id: 'ops-poison', data: {} };
    await t.admin.query(`SELECT graphile_worker.add_job('test.poison', $1::json, max_attempts => ${CRASH_RERUNS})`, [JSON.stringify(envelope)]);
    await t.admin.query(`UPDATE graphile_worker._private_jobs SET attempts = ${CRASH_RERUNS - 1}, last_error = 'worker died mid-run' WHERE payload->>'chain_id' = 'ops-poison'`);
    // When a worker takes it (the queue's last run of the job) and dies under it
    worker = await start({}, [poison]);
    const left = async () =>
      (await t.admin.query(`SELECT attempts, max_attempts, locked_at IS NOT NULL AS locked FROM graphile_worker._private_jobs WHERE payload->>'chain_id' = 'ops-poison'`)).rows[0];
    await waitFor('the job to be taken', async () => runs > 0 || (await left()) === undefined, 10_000, 50);
    await worker.stopNow();
    release();
    worker = undefined;
    // Then the job did not vanish unseen: it is given up for review (one item), and no job the queue will never run is left
    const items = (await t.admin.query(`SELECT detail FROM review_items WHERE kind = 'job_failed' AND subject_id = 'ops-poison'`)).rows;
    assert.equal(items.length, 1, `job_failed items: ${items.length}; handler runs: ${runs}; left in the queue: ${JSON.stringify(await left())}`);
    assert.deepEqual([items[0].detail.attempts, items[0].detail.max_attempts], [CRASH_RERUNS, 8]);
    assert.equal(await left(), undefined, 'no dead job is left in the queue');
  });

  it('a job whose retries cannot be queued is given up with a job_failed item once the queue stops re-running it, also under a budget above CRASH_RERUNS', async () => {
    // Given a task with the default budget of 8 attempts that always fails, and a queue that refuses its retries
    let runs = 0;
    const failing = defineTask<Record<string, unknown>>({
      name: 'test.unqueueable',
      maxAttempts: 8,
      async handle() {
        runs += 1;
        throw new Error('provider said 500');
      },
    });
    await t.admin.query(`
      CREATE FUNCTION test_refuse_retries() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.payload->>'chain_id' IN ('ops-unqueueable', 'ops-unqueueable-once') AND (NEW.payload->>'attempt')::int > 1 THEN
          RAISE EXCEPTION 'the queue is refusing writes';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_refuse_retries BEFORE INSERT ON graphile_worker._private_jobs
        FOR EACH ROW EXECUTE FUNCTION test_refuse_retries();`);
    try {
      // (its first runs failed the same way: graphile-worker re-ran it 3 times already)
      const envelope = { correlation_id: 'ops-unqueueable', tenant_id: null, attempt: 1, max_attempts: 0, chain_id: 'ops-unqueueable', data: {} };
      await t.admin.query(`SELECT graphile_worker.add_job('test.unqueueable', $1::json, max_attempts => ${CRASH_RERUNS})`, [JSON.stringify(envelope)]);
      await t.admin.query(`UPDATE graphile_worker._private_jobs SET attempts = ${CRASH_RERUNS - 1}, last_error = 'could not schedule the retry' WHERE payload->>'chain_id' = 'ops-unqueueable'`);
      // (and a job the queue runs once, as the periodic sweeps are queued: its first run is its last)
      const once = { correlation_id: 'ops-unqueueable-once', tenant_id: null, attempt: 1, max_attempts: 0, chain_id: 'ops-unqueueable-once', data: {} };
      await t.admin.query(`SELECT graphile_worker.add_job('test.unqueueable', $1::json, max_attempts => 1)`, [JSON.stringify(once)]);
      // When a worker takes them (the queue's last run of each)
      worker = await start({}, [failing]);
      const left = async (chain: string) =>
        (await t.admin.query(`SELECT attempts, max_attempts, locked_at IS NOT NULL AS locked FROM graphile_worker._private_jobs WHERE payload->>'chain_id' = $1`, [chain])).rows[0];
      for (const chain of ['ops-unqueueable', 'ops-unqueueable-once']) {
        await waitFor('the job to be run or given up', async () => {
          const job = await left(chain);
          return job === undefined || (job.attempts >= job.max_attempts && !job.locked);
        }, 10_000, 50);
      }
      await sleep(200);
      await worker.stop();
      worker = undefined;
      // Then each is given up for review (one item each), and no job the queue will never run is left
      for (const chain of ['ops-unqueueable', 'ops-unqueueable-once']) {
        const items = (await t.admin.query(`SELECT detail FROM review_items WHERE kind = 'job_failed' AND subject_id = $1`, [chain])).rows;
        assert.equal(items.length, 1, `${chain}: job_failed items: ${items.length}; handler runs: ${runs}; left in the queue: ${JSON.stringify(await left(chain))}`);
        assert.equal(items[0].detail.max_attempts, 8);
        assert.equal(await left(chain), undefined, `${chain}: no dead job is left in the queue`);
      }
    } finally {
      await worker?.stop();
      worker = undefined;
      await t.admin.query(`DELETE FROM graphile_worker._private_jobs WHERE payload->>'chain_id' IN ('ops-unqueueable', 'ops-unqueueable-once')`);
      await t.admin.query('DROP TRIGGER test_refuse_retries ON graphile_worker._private_jobs; DROP FUNCTION test_refuse_retries()');
    }
  });
});
