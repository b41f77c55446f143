/**
 * Job retries at their edges: the log order when the queue is faster than
 * the reply, periodic jobs whose next tick comes while a retry waits, and a
 * graceful shutdown while a failed attempt schedules its retry.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { loadConfig, type Config } from '../config.js';
import { runInScope } from '../core/context.js';
import { createLogger } from '../core/logger.js';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { enqueueJob } from './enqueueJob.js';
import { defineTask } from './task.js';
import { startWorker, type RunningWorker } from './worker.js';

const record = defineTask<{ value: string; fail_times?: number }>({
  name: 'test.record',
  maxAttempts: 3,
  async handle(data, ctx) {
    const { rows } = await ctx.ownerPool.query<{ n: number }>(
      `INSERT INTO job_test_attempts (value) VALUES ($1) RETURNING (SELECT count(*) FROM job_test_attempts WHERE value = $1)::int + 1 AS n`,
      [data.value],
    );
    const attempt = rows[0]!.n;
    if (data.fail_times !== undefined && attempt <= data.fail_times) throw new Error(`provider said 500 (attempt ${attempt})`);
    await ctx.ownerPool.query('INSERT INTO job_test_runs (value, correlation_id, attempt) VALUES ($1, $2, $3)', [data.value, ctx.correlationId, ctx.attempt]);
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

describe('job retries', () => {
  let t: TestDatabase;
  let config: Config;
  const workers: RunningWorker[] = [];
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
      const worker = await startWorker({ databaseUrl: t.url, config, logger: createLogger('info', 'storekeep', capture), tasks: [record], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
      workers.push(worker);
      await runInScope({ correlationId: 'req-logged-7' }, () =>
        t.db.transaction().execute((tx) => enqueueJob(tx, 'test.record', { value: 'logged', fail_times: 1 })),
      );
      await waitFor('the logged job', async () => (await runs('logged')).length === 1);
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
    const worker = await startWorker({ databaseUrl: t.url, config: cfg, logger: createLogger('silent'), tasks: [alwaysFails], cronItems: [], serveMetrics: false, pollIntervalMs: 50 });
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
    await waitFor('every chain to end', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs`)).rows[0].n === 0, 30_000, 200);
    const attempts = (await t.admin.query(`SELECT count(*)::int AS n FROM job_test_attempts WHERE value = 'periodic'`)).rows[0].n;
    const items = (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE kind = 'job_failed' AND detail->>'task' = 'test.periodic'`)).rows[0].n;
    // Each chain ran exactly 8 attempts and ended in one review item.
    assert.ok(items >= 2, `${items} chain(s) ended`);
    assert.equal(attempts, items * 8, `ran ${attempts} attempts but opened ${items} job_failed item(s)`);
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
    const worker = await startWorker({ databaseUrl: t.url, config: cfg, logger: createLogger('silent'), tasks: [slowRecord], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
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

  const runs = async (value: string) =>
    (await t.admin.query<{ value: string; correlation_id: string; attempt: number }>('SELECT * FROM job_test_runs WHERE value = $1', [value])).rows;
});
