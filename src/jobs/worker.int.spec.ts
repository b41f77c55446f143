import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { loadConfig, type Config } from '../config.js';
import { runInScope } from '../core/context.js';
import { createLogger } from '../core/logger.js';
import { workerRegistry } from '../core/metrics.js';
import { startTestApp } from '../../test/support/app.js';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { enqueueJob } from './enqueueJob.js';
import { jobFailedWording } from './runJob.js';
import { defineTask, PermanentJobError } from './task.js';
import { startWorker, type RunningWorker } from './worker.js';

// Test tasks write into a plain table the app role may use, so the Then steps
// can count how often each job ran.
const record = defineTask<{ value: string; delay_ms?: number; fail_times?: number; permanent?: boolean }>({
  name: 'test.record',
  maxAttempts: 3,
  async handle(data, ctx) {
    if (data.delay_ms) await sleep(data.delay_ms);
    const { rows } = await ctx.ownerPool.query<{ n: number }>(
      `INSERT INTO job_test_attempts (value) VALUES ($1) RETURNING (SELECT count(*) FROM job_test_attempts WHERE value = $1)::int + 1 AS n`,
      [data.value],
    );
    const attempt = rows[0]!.n;
    if (data.permanent) throw new PermanentJobError(`refused ${data.value}`);
    if (data.fail_times !== undefined && attempt <= data.fail_times) throw new Error(`provider said 500 (attempt ${attempt})`);
    await ctx.ownerPool.query('INSERT INTO job_test_runs (value, correlation_id, attempt) VALUES ($1, $2, $3)', [data.value, ctx.correlationId, ctx.attempt]);
  },
});

// A task that always fails with the message it is given (think: a provider's
// answer quoted in the error, cut to a length).
const failsWith = defineTask<{ value: string; message: string; cut?: number; permanent?: boolean }>({
  name: 'test.failswith',
  maxAttempts: 2,
  async handle(data, ctx) {
    await ctx.ownerPool.query('INSERT INTO job_test_attempts (value) VALUES ($1)', [data.value]);
    const message = data.cut === undefined ? data.message : data.message.slice(0, data.cut);
    if (data.permanent) throw new PermanentJobError(message);
    throw new Error(message);
  },
});

// A periodic task that always fails (think: pieces.reservations.sweep while a
// table it needs is locked/broken). Default max attempts (config.jobMaxAttempts).
const alwaysFails = defineTask<Record<string, unknown>>({
  name: 'test.periodic',
  async handle(_data, ctx) {
    await ctx.ownerPool.query(`INSERT INTO job_test_attempts (value) VALUES ('periodic')`);
    throw new Error('sweep failed');
  },
});

describe('worker', () => {
  let t: TestDatabase;
  let config: Config;
  const logger = createLogger('silent');
  const workers: RunningWorker[] = [];
  const start = async () => {
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger, tasks: [record], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    workers.push(worker);
    return worker;
  };
  const runs = async (value: string) =>
    (await t.admin.query<{ value: string; correlation_id: string; attempt: number }>('SELECT * FROM job_test_runs WHERE value = $1', [value])).rows;

  before(async () => {
    t = await createTestDatabase();
    config = { ...loadConfig({ LOG_LEVEL: 'silent' }), jobRetryBaseMs: 20, jobRetryMaxMs: 100, workerConcurrency: 4 };
    await t.admin.query(`
      CREATE TABLE job_test_runs (value text NOT NULL, correlation_id text NOT NULL, attempt int NOT NULL);
      CREATE TABLE job_test_attempts (value text NOT NULL);`);
  });
  beforeEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
  });
  after(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
    await t.drop();
  });

  /** A worker serving /metrics on a random port behind METRICS_TOKEN `worker-scrape-0123456789` (with `overrides`). */
  async function metricsWorker(overrides: Partial<Config> = {}): Promise<RunningWorker> {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const worker = await startWorker({
      databaseUrl: t.url, appDatabaseUrl: t.appUrl,
      config: { ...config, workerMetricsPort: port, metricsToken: 'worker-scrape-0123456789', ...overrides },
      logger,
      tasks: [record],
      cronItems: [],
      pollIntervalMs: 100,
    });
    workers.push(worker);
    assert.ok(worker.metricsUrl);
    return worker;
  }

  it('serves /metrics on its own port, behind METRICS_TOKEN when one is set', async () => {
    const worker = await metricsWorker();
    assert.equal((await fetch(`${worker.metricsUrl}/metrics`)).status, 401);
    const scraped = await fetch(`${worker.metricsUrl}/metrics`, { headers: { authorization: 'Bearer worker-scrape-0123456789' } });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /storekeep_jobs_total|process_cpu_user_seconds_total/);
    assert.equal((await fetch(`${worker.metricsUrl}/healthz`)).status, 200);
  });

  it("each process's /metrics lists its own families and the shared ones, not the other's (the API listed the jobs' with no values, and an integrity last run of 0)", async () => {
    const worker = await metricsWorker();
    const families = (text: string) => new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1]!));
    const workers = families(await (await fetch(`${worker.metricsUrl}/metrics`, { headers: { authorization: 'Bearer worker-scrape-0123456789' } })).text());
    const api = await startTestApp();
    try {
      await api.newTenant(); // a request or two, so the API's HTTP histogram has values
      const apis = families((await api.operator.get('/metrics')).body as string);
      const shared = ['process_cpu_user_seconds_total', 'storekeep_transaction_retries_total', 'storekeep_integrity_open_findings'];
      const workerOnly = ['storekeep_jobs_total', 'storekeep_job_duration_seconds', 'storekeep_integrity_findings', 'storekeep_integrity_last_run_timestamp_seconds'];
      const apiOnly = ['http_request_duration_seconds', 'storekeep_group_commit_batch_size', 'storekeep_sales_row_held_total'];
      for (const name of [...shared, ...workerOnly]) assert.ok(workers.has(name), `the worker serves ${name}`);
      for (const name of apiOnly) assert.ok(!workers.has(name), `the worker does not serve ${name}`);
      for (const name of [...shared, ...apiOnly]) assert.ok(apis.has(name), `the API serves ${name}`);
      for (const name of workerOnly) assert.ok(!apis.has(name), `the API does not serve ${name}`);
    } finally {
      await api.close();
    }
  });

  it('a wrong METRICS_TOKEN on the worker\'s /metrics counts as a failed authentication: past AUTH_FAILURES_PER_MINUTE its address is 429; the right token still scrapes', async () => {
    const worker = await metricsWorker({ authFailuresPerMinute: 3 });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await fetch(`${worker.metricsUrl}/metrics`, { headers: { authorization: `Bearer guess-${i}` } })).status);
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    const limited = await fetch(`${worker.metricsUrl}/metrics`);
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.equal(((await limited.json()) as { code: string }).code, 'rate_limited');
    const scraped = await fetch(`${worker.metricsUrl}/metrics`, { headers: { authorization: 'Bearer worker-scrape-0123456789' } });
    assert.equal(scraped.status, 200);
  });

  it('starts with every registered task and the default schedule (what `storekeep worker` runs)', async () => {
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger, serveMetrics: false });
    workers.push(worker);
    const known = await waitFor('the cron items to be registered', async () => {
      const { rows } = await t.admin.query<{ identifier: string }>(`SELECT identifier FROM graphile_worker._private_known_crontabs ORDER BY 1`);
      return rows.length > 0 && rows.map((row) => row.identifier);
    });
    assert.ok(known.includes('integrity.run') && known.includes('stock.snapshots'), JSON.stringify(known));
  });

  it("a night's integrity run missed while no worker ran (a restart at 02:30) is run when a worker starts again, once", async () => {
    for (const worker of workers.splice(0)) await worker.stop();
    // Given the checks last ran two days ago, and the other nightly work is up to date
    await t.admin.query(`UPDATE graphile_worker._private_known_crontabs SET last_execution = now() WHERE identifier <> 'integrity.run'`);
    await t.admin.query(
      `INSERT INTO graphile_worker._private_known_crontabs (identifier, known_since, last_execution) VALUES ('integrity.run', now() - interval '3 days', now() - interval '2 days')
       ON CONFLICT (identifier) DO UPDATE SET last_execution = now() - interval '2 days'`,
    );
    const runs = async () => (await workerRegistry.getSingleMetric('storekeep_jobs_total')?.get())?.values.find((value) => value.labels.task === 'integrity.run' && value.labels.outcome === 'done')?.value ?? 0;
    const before = await runs();
    // When a worker starts with the default schedule
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger, serveMetrics: false });
    workers.push(worker);
    // Then the night it missed (the last 02:30 UTC, less than a day ago) is run, once
    await waitFor('the missed integrity run', async () => (await runs()) > before, 20_000, 100);
    const lastTick = new Date();
    lastTick.setUTCHours(2, 30, 0, 0);
    if (lastTick.getTime() > Date.now()) lastTick.setUTCDate(lastTick.getUTCDate() - 1);
    const known = (await t.admin.query(`SELECT last_execution FROM graphile_worker._private_known_crontabs WHERE identifier = 'integrity.run'`)).rows[0];
    assert.ok(known.last_execution.getTime() >= lastTick.getTime(), `last_execution ${known.last_execution.toISOString()} is the missed tick ${lastTick.toISOString()} or later`);
    await sleep(500);
    assert.equal(await runs(), before + 1);
  });

  it('the app role may enqueue, and nothing else on the queue; never for another tenant', async () => {
    for (const statement of [
      'SELECT * FROM graphile_worker._private_jobs',
      'SELECT * FROM graphile_worker.jobs',
      `SELECT graphile_worker.add_job('test.record', '{}'::json)`,
      'DELETE FROM graphile_worker._private_jobs',
    ]) {
      await assert.rejects(t.appPool.query(statement), /permission denied/, statement);
    }
    const client = await t.appPool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('app.tenant_id', '00000000-0000-0000-0000-000000000000', true)`);
      await assert.rejects(
        client.query(`SELECT enqueue_job('test.record', '{"tenant_id": "11111111-1111-4111-8111-111111111111", "data": {}}'::jsonb)`),
        /another tenant/,
      );
      await client.query('ROLLBACK');
      // nor for any tenant from a session with no tenant set (system work, naming no tenant, is queued)
      await client.query('BEGIN');
      await assert.rejects(
        client.query(`SELECT enqueue_job('test.record', '{"tenant_id": "11111111-1111-4111-8111-111111111111", "data": {}}'::jsonb)`),
        /only in a transaction of that tenant/,
      );
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      const system = await client.query(`SELECT enqueue_job('test.record', '{"tenant_id": null, "data": {}}'::jsonb) AS id`);
      assert.ok(system.rows[0].id);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('never runs a job enqueued in a transaction that rolled back', async () => {
    // Given a business transaction that enqueues a job and then fails
    await assert.rejects(
      t.db.transaction().execute(async (tx) => {
        await enqueueJob(tx, 'test.record', { value: 'rolled-back' });
        throw new Error('business rule broken');
      }),
      /business rule broken/,
    );
    // and one that commits
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'committed' }));
    // When a worker runs until the committed job is done
    await start();
    await waitFor('the committed job', async () => (await runs('committed')).length === 1);
    await sleep(300);
    // Then the rolled-back job never existed and never ran
    assert.equal((await runs('rolled-back')).length, 0);
    const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`);
    assert.equal(rows[0].n, 0);
  });

  it('runs each committed job exactly once with two workers competing', async () => {
    // Given 40 committed jobs
    const values = Array.from({ length: 40 }, (_, i) => `both-${i}`);
    await t.db.transaction().execute(async (tx) => {
      for (const value of values) await enqueueJob(tx, 'test.record', { value, delay_ms: 10 });
    });
    // When two workers (separate pools, 4 slots each) take jobs at once
    await Promise.all([start(), start()]);
    await waitFor('all jobs', async () => {
      const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM job_test_runs WHERE value LIKE 'both-%'`);
      return rows[0].n >= values.length;
    });
    await sleep(300);
    // Then every job ran once: one attempt, one recorded run
    const { rows } = await t.admin.query(
      `SELECT value, count(*)::int AS n FROM job_test_attempts WHERE value LIKE 'both-%' GROUP BY value ORDER BY value`,
    );
    assert.equal(rows.length, values.length);
    assert.ok(rows.every((row: { n: number }) => row.n === 1), JSON.stringify(rows.filter((row: { n: number }) => row.n !== 1)));
  });

  it('carries the correlation id of the enqueuing request into the job', async () => {
    await runInScope({ correlationId: 'req-corr-42' }, () => t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'correlated' })));
    await start();
    const [run] = await waitFor('the correlated job', async () => {
      const found = await runs('correlated');
      return found.length > 0 && found;
    });
    assert.equal(run!.correlation_id, 'req-corr-42');
  });

  it('logs every line of a job with the correlation id of the request that enqueued it', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const capture = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
    const worker = await startWorker({
      databaseUrl: t.url, appDatabaseUrl: t.appUrl,
      config,
      logger: createLogger('info', 'storekeep', capture),
      tasks: [record],
      cronItems: [],
      serveMetrics: false,
      pollIntervalMs: 100,
    });
    workers.push(worker);
    await runInScope({ correlationId: 'req-logged-7' }, () =>
      t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'logged', fail_times: 1 })),
    );
    await waitFor('the logged job', async () => (await runs('logged')).length === 1);
    const jobLines = lines.filter((line) => line.task === 'test.record');
    assert.deepEqual(jobLines.map((line) => line.msg), ['job failed; retry scheduled', 'job done']);
    assert.ok(jobLines.every((line) => line.correlation_id === 'req-logged-7'), JSON.stringify(jobLines));
  });

  it('retries a failing job with backoff and runs it to success once', async () => {
    // Given a job whose first two attempts fail
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'flaky', fail_times: 2 }));
    await start();
    const [run] = await waitFor('the flaky job to succeed', async () => {
      const found = await runs('flaky');
      return found.length > 0 && found;
    });
    await sleep(300);
    // Then it succeeded on the third attempt, once, and the retries are counted
    assert.equal(run!.attempt, 3);
    assert.equal((await runs('flaky')).length, 1);
    const attempts = await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'flaky'`);
    assert.equal(attempts.rows[0].n, 3);
    const metrics = await workerRegistry.getSingleMetricAsString('storekeep_jobs_total');
    assert.match(metrics, /storekeep_jobs_total\{task="test.record",outcome="retried"\} [1-9]/);
  });

  it('puts a job that fails every attempt into the review queue, saying where its error is (the log, under the correlation id)', async () => {
    await runInScope({ correlationId: 'req-doomed' }, () =>
      t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'doomed', fail_times: 99 })),
    );
    await start();
    const item = await waitFor('a job_failed review item', async () => {
      const { rows } = await t.admin.query(`SELECT * FROM review_items WHERE kind = 'job_failed' AND detail->'data'->>'value' = 'doomed'`);
      return rows[0];
    });
    await sleep(300);
    // Then it was tried maxAttempts (3) times, never succeeded, left one item and no job behind
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'doomed'`)).rows[0].n, 3);
    assert.equal((await runs('doomed')).length, 0);
    // (the error itself is the log's, not the item's: src/jobs/jobFailedWording.int.spec.ts)
    assert.equal(item.detail.error, jobFailedWording('test.record', 3, 3, 'last_attempt'));
    assert.doesNotMatch(JSON.stringify(item.detail), /provider said 500/);
    assert.equal(item.detail.correlation_id, 'req-doomed');
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE detail->'data'->>'value' = 'doomed'`)).rows[0].n, 1);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n, 0);
    const event = await t.admin.query(`SELECT actor, correlation_id FROM events WHERE type = 'job.give_up' AND correlation_id = 'req-doomed'`);
    assert.deepEqual(event.rows, [{ actor: 'worker', correlation_id: 'req-doomed' }]);
  });

  it('a retry that cannot be scheduled still uses up an attempt: the job gives up after maxAttempts runs, not after graphile-worker\'s crash reruns', async () => {
    // Given the database refuses to queue this job's second attempt (a real error from add_job)
    await t.admin.query(`
      CREATE FUNCTION test_refuse_second_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.payload->'data'->>'value' = 'unschedulable' AND NEW.payload->>'attempt' = '2' THEN
          RAISE EXCEPTION 'the queue is refusing writes';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_refuse_second_attempt BEFORE INSERT ON graphile_worker._private_jobs
        FOR EACH ROW EXECUTE FUNCTION test_refuse_second_attempt();`);
    try {
      await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'unschedulable', fail_times: 99 }));
      await start();
      // When every run fails (the first one's retry cannot be queued: graphile-worker re-runs the job itself)
      const item = await waitFor(
        'a job_failed review item',
        async () => (await t.admin.query(`SELECT * FROM review_items WHERE kind = 'job_failed' AND detail->'data'->>'value' = 'unschedulable'`)).rows[0],
        20_000,
      );
      await sleep(300);
      // Then the handler ran maxAttempts (3) times in all — the re-run counted as the second attempt
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'unschedulable'`)).rows[0].n, 3);
      assert.equal(item.detail.attempts, 3);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n, 0);
    } finally {
      await Promise.all(workers.splice(0).map((worker) => worker.stop()));
      await t.admin.query(`DELETE FROM graphile_worker._private_jobs WHERE payload->'data'->>'value' = 'unschedulable'`);
      await t.admin.query('DROP TRIGGER test_refuse_second_attempt ON graphile_worker._private_jobs; DROP FUNCTION test_refuse_second_attempt()');
    }
  });

  it('does not retry a permanent failure', async () => {
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'refused', permanent: true }));
    await start();
    await waitFor('the review item', async () => {
      const { rows } = await t.admin.query(`SELECT 1 FROM review_items WHERE kind = 'job_failed' AND detail->'data'->>'value' = 'refused'`);
      return rows.length === 1;
    });
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'refused'`)).rows[0].n, 1);
  });

  it('a give-up whose error is cut inside a character (an emoji across the 2,000th) still opens its job_failed item, once', async () => {
    // Given a job that fails for good with a long message whose 2,000th character is half of an emoji
    const message = `provider said: ${'x'.repeat(2000 - 'provider said: '.length - 1)}\u{1F600} and more`;
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.failswith', { value: 'cut-emoji', message, permanent: true }));
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger, tasks: [failsWith], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    workers.push(worker);
    // When it gives up
    const item = await waitFor(
      'a job_failed review item',
      async () => (await t.admin.query(`SELECT * FROM review_items WHERE kind = 'job_failed' AND detail->'data'->>'value' = 'cut-emoji'`)).rows[0],
      10_000,
    );
    await sleep(300);
    // Then the item says where the error is (the log), and the job is gone
    assert.equal(item.detail.error, jobFailedWording('test.failswith', 1, 2, 'permanent'));
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE detail->'data'->>'value' = 'cut-emoji'`)).rows[0].n, 1);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'cut-emoji'`)).rows[0].n, 1);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n, 0);
  });

  it('a failure whose message holds half a character (a provider\'s answer cut at a length) is retried with backoff and given up with one item', async () => {
    // Given a job whose error quotes an answer cut inside an emoji (what ProviderRejected's 500-character cut can make)
    const quoted = 'provider refused the order (422): {"note":"';
    const message = `${quoted}\u{1F600}"}`;
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.failswith', { value: 'half-char', message, cut: quoted.length + 1 }));
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger, tasks: [failsWith], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    workers.push(worker);
    const item = await waitFor(
      'a job_failed review item',
      async () => (await t.admin.query(`SELECT * FROM review_items WHERE kind = 'job_failed' AND detail->'data'->>'value' = 'half-char'`)).rows[0],
      10_000,
    );
    await sleep(300);
    // Then it ran its 2 attempts (our retry, not graphile-worker's crash re-runs), and opened one item (saying where the error is)
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'half-char'`)).rows[0].n, 2);
    assert.equal(item.detail.attempts, 2);
    assert.equal(item.detail.error, jobFailedWording('test.failswith', 2, 2, 'last_attempt'));
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE detail->'data'->>'value' = 'half-char'`)).rows[0].n, 1);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n, 0);
  });

  it('finishes the running job on graceful shutdown', async () => {
    const worker = await start();
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'slow', delay_ms: 700 }));
    await waitFor('the slow job to start', async () => (await t.admin.query(`SELECT 1 FROM job_test_attempts WHERE value = 'slow'`)).rows.length === 1);
    // When the worker is stopped while the job runs
    await worker.stop();
    // Then the job had finished before stop returned
    assert.equal((await runs('slow')).length, 1);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n, 0);
  });

  it('stopNow (a second shutdown signal) while a graceful stop waits for a job: the job is released, to be run again, and stop returns', async () => {
    // A job that says it started, then hangs (think: a provider that never answers)
    const hangs = defineTask<{ value: string }>({
      name: 'test.hangs',
      async handle(data, ctx) {
        await ctx.ownerPool.query('INSERT INTO job_test_attempts (value) VALUES ($1)', [data.value]);
        await sleep(3_000);
      },
    });
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger, tasks: [hangs], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    workers.push(worker);
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.hangs', { value: 'hung' }));
    await waitFor('the hung job to start', async () => (await t.admin.query(`SELECT 1 FROM job_test_attempts WHERE value = 'hung'`)).rows.length === 1);
    // When the graceful stop waits for it and a second signal comes
    const stopping = worker.stop().catch(() => undefined);
    await sleep(200);
    const startedAt = Date.now();
    await worker.stopNow();
    // Then it returned without waiting for the job, which is released with the reason, to be run again
    assert.ok(Date.now() - startedAt < 2_500, `stopNow waited ${Date.now() - startedAt} ms`);
    const { rows } = await t.admin.query<{ locked_at: Date | null; attempts: number; last_error: string | null }>(
      `SELECT locked_at, attempts, last_error FROM graphile_worker._private_jobs WHERE payload->'data'->>'value' = 'hung'`,
    );
    assert.equal(rows.length, 1, 'the job is still queued');
    assert.equal(rows[0]!.locked_at, null, 'and no longer locked by the stopped worker');
    assert.match(rows[0]!.last_error ?? '', /second shutdown signal/);
    await t.admin.query(`DELETE FROM graphile_worker._private_jobs WHERE payload->'data'->>'value' = 'hung'`);
    await stopping; // the cut job's handler wakes and fails against the closed pools, inside the stopped worker
  });

  it('"retry scheduled" is logged before the retry can run, even when add_job\'s reply reaches Node after the retry has run', async () => {
    // Simulate a loaded machine: the backend that ran add_job has committed
    // (the retry is visible to the other worker slots) but its reply reaches
    // Node late. Only the reply is delayed — nothing else changes.
    const original = pg.Client.prototype.query;
    (pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
      const result = (original as unknown as (...a: unknown[]) => unknown).apply(this, args);
      const first = args[0] as string | { text?: string } | undefined;
      const text = typeof first === 'string' ? first : (first?.text ?? '');
      if (text.includes('.add_job(') && text.includes('identifier => $1') && result && typeof (result as Promise<unknown>).then === 'function') {
        return (result as Promise<unknown>).then(async (value) => {
          await sleep(400);
          return value;
        });
      }
      return result;
    };
    try {
      const lines: Array<Record<string, unknown>> = [];
      const capture = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
      const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger: createLogger('info', 'storekeep', capture), tasks: [record], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
      workers.push(worker);
      await runInScope({ correlationId: 'req-logged-8' }, () =>
        t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'logged-late', fail_times: 1 })),
      );
      await waitFor('the logged job', async () => (await runs('logged-late')).length === 1);
      const jobLines = lines.filter((line) => line.task === 'test.record');
      assert.deepEqual(jobLines.map((line) => line.msg), ['job failed; retry scheduled', 'job done']);
    } finally {
      pg.Client.prototype.query = original;
    }
  });

  it('a periodic (cron) job that always fails gives up after JOB_MAX_ATTEMPTS and opens a job_failed item — even when the next tick comes while a retry waits', async () => {
    // Backoff as in production, scaled down 50x: base 1000 ms -> 20 ms, the
    // `* * * * *` cron tick (60 s) -> 1.2 s. With 8 attempts the backoff
    // alone (≥ 0.5+1+2+4+8+16+32 = 63.5 s, scaled 1.27 s) is longer than a tick.
    const cfg = { ...config, jobRetryBaseMs: 20, jobRetryMaxMs: 6_000, jobMaxAttempts: 8 };
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config: cfg, logger: createLogger('silent'), tasks: [alwaysFails], cronItems: [], serveMetrics: false, pollIntervalMs: 50 });
    workers.push(worker);
    // What graphile-worker's cron does on every tick of a CronItem with a jobKey (job_key_mode null = replace).
    const tick = () =>
      t.admin.query(
        `SELECT graphile_worker.add_job('test.periodic', json_build_object('_cron', json_build_object('ts', now(), 'backfilled', false)), null, now(), null, 'cron:test.periodic', null, null, null)`,
      );
    await tick();
    const deadline = Date.now() + 8_000;
    while (Date.now() < deadline) {
      await sleep(1_200);
      await tick();
    }
    // The ticks stop; every chain started runs to its end (at most ~3 s of backoff left).
    const left = async () =>
      (
        await t.admin.query(
          `SELECT count(*)::int AS n FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks k ON k.id = j.task_id WHERE k.identifier = 'test.periodic'`,
        )
      ).rows[0].n;
    await waitFor('every chain to end', async () => (await left()) === 0, 30_000, 200);
    const attempts = (await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'periodic'`)).rows[0].n;
    const { items, giveUps } = (
      await t.admin.query(`SELECT count(*)::int AS items, sum(seen_count)::int AS "giveUps" FROM review_items WHERE kind = 'job_failed' AND detail->>'task' = 'test.periodic'`)
    ).rows[0];
    // Each chain ran exactly 8 attempts and ended in one give-up, all counted on the task's one open item.
    assert.ok(giveUps >= 2, `${giveUps} chain(s) ended`);
    assert.equal(attempts, giveUps * 8, `ran ${attempts} attempts but gave up ${giveUps} time(s)`);
    assert.equal(items, 1, `${items} job_failed items for one periodic task`);
  });

  it('graceful shutdown while a failing job schedules its retry: the finished job is acknowledged (not left locked to run again)', async () => {
    const slowRecord = defineTask<{ value: string }>({
      name: 'test.slowfail',
      maxAttempts: 3,
      async handle(data, ctx) {
        await ctx.ownerPool.query(`INSERT INTO job_test_attempts (value) VALUES ($1)`, [data.value]);
        await sleep(500);
        throw new Error('provider said 500');
      },
    });
    const cfg = { ...config, jobRetryBaseMs: 60_000, jobRetryMaxMs: 60_000 };
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config: cfg, logger: createLogger('silent'), tasks: [slowRecord], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.slowfail', { value: 'shutdown-ack' }));
    await waitFor('the job to start', async () => (await t.admin.query(`SELECT 1 FROM job_test_attempts WHERE value = 'shutdown-ack'`)).rows.length === 1);
    // When the worker is stopped gracefully while the attempt runs
    await worker.stop();
    await sleep(300);
    // Then only the scheduled retry (attempt 2, waiting a minute) is left; the finished attempt 1 is gone
    const { rows } = await t.admin.query(
      `SELECT j.id, j.payload->>'attempt' AS attempt, j.locked_at IS NOT NULL AS locked, j.locked_by, j.attempts, j.max_attempts
       FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks k ON k.id = j.task_id WHERE k.identifier = 'test.slowfail' ORDER BY j.id`,
    );
    assert.deepEqual(rows.map((row: { attempt: string; locked: boolean }) => [row.attempt, row.locked]), [['2', false]], JSON.stringify(rows));
  });
});
