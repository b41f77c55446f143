import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { capturingLogger } from '../../test/support/logs.js';
import { Outage } from '../../test/support/outage.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { loadConfig } from '../config.js';
import { enqueueJob } from './enqueueJob.js';
import { defineTask } from './task.js';
import { startWorker, type RunningWorker } from './worker.js';

/**
 * The database goes away while a job runs, so the job's outcome cannot be
 * recorded: graphile-worker then stops its whole runner. The worker used to
 * stay like that — `storekeep worker`, with nothing left to do, exited 0 —
 * and ran no job again until someone restarted it.
 */
describe('worker: the database goes away while a job runs', () => {
  let t: TestDatabase;
  let outage: Outage;
  let worker: RunningWorker | undefined;
  const { logger, lines } = capturingLogger('warn');
  /** Runs per job value; a job named `hold` waits for `release()` once. */
  const ran = new Map<string, number>();
  let started!: () => void;
  const holding = new Promise<void>((resolve) => (started = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));

  const hold = defineTask<{ value: string }>({
    name: 'test.hold',
    maxAttempts: 3,
    async handle(data) {
      const runs = (ran.get(data.value) ?? 0) + 1;
      ran.set(data.value, runs);
      if (data.value === 'hold' && runs === 1) {
        started();
        await released;
      }
    },
  });

  before(async () => {
    t = await createTestDatabase();
    outage = await Outage.inFrontOf(t.url);
  });
  after(async () => {
    await worker?.stop();
    await outage.down();
    await t.drop();
  });

  it('its runner, stopped because the job could not be recorded, is started again once the database is back: the job runs again at once (not in 4 hours) and new jobs run', { timeout: 60_000 }, async () => {
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), jobRetryBaseMs: 20, jobRetryMaxMs: 100, workerConcurrency: 2 };
    worker = await startWorker({ databaseUrl: outage.through(t.url), appDatabaseUrl: outage.through(t.appUrl), config, logger, tasks: [hold], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.hold', { value: 'hold' }));
    await holding;

    // When the database goes away while the job runs, and the job ends (its completion cannot be recorded)
    await outage.down();
    release();
    await waitFor('graphile-worker to give up on recording it', async () => lines.some((line) => /Failed to complete jobs|Failed to fail jobs/.test(String(line.msg))), 10_000);
    await sleep(500);
    await outage.up();

    // Then, once it is back, a new job runs, and so does the held one (its lock freed)
    await t.db.transaction().execute((tx) => enqueueJob(tx, 'test.hold', { value: 'after' }));
    await waitFor('a job enqueued after the outage to run', async () => ran.get('after') === 1, 20_000, 100);
    await waitFor('the held job to run again', async () => ran.get('hold') === 2, 20_000, 100);
    await waitFor('the queue to be empty', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n === 0, 10_000, 100);
    assert.ok(lines.some((line) => line.msg === 'the job runner started again'), JSON.stringify(lines.map((line) => line.msg)));
  });
});
