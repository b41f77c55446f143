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
 * Each describe's world: its own database behind an outage proxy, a worker
 * the test starts on it (through the proxy), the worker's log from warn up,
 * and the task `test.held`, whose first run of each job value other than
 * `after` waits until the test releases it (`gate(value)`); `fails` then
 * throws. `ran` counts each value's runs.
 */
function heldJobsWorld() {
  const { logger, lines } = capturingLogger('warn');
  const ran = new Map<string, number>();
  const gates = new Map<string, { started: Promise<void>; start: () => void; released: Promise<void>; release: () => void }>();
  const gate = (value: string) => {
    let found = gates.get(value);
    if (!found) {
      let start!: () => void;
      let release!: () => void;
      const started = new Promise<void>((resolve) => (start = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      found = { started, start, released, release };
      gates.set(value, found);
    }
    return found;
  };
  const held = defineTask<{ value: string }>({
    name: 'test.held',
    maxAttempts: 3,
    async handle(data) {
      const runs = (ran.get(data.value) ?? 0) + 1;
      ran.set(data.value, runs);
      if (runs > 1 || data.value === 'after') return;
      gate(data.value).start();
      await gate(data.value).released;
      if (data.value === 'fails') throw new Error('this run fails');
    },
  });
  const world = {
    t: undefined as unknown as TestDatabase,
    outage: undefined as unknown as Outage,
    worker: undefined as RunningWorker | undefined,
    lines,
    ran,
    gate,
    async startWorker(workerConcurrency: number): Promise<void> {
      const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), jobRetryBaseMs: 20, jobRetryMaxMs: 100, workerConcurrency };
      const { t, outage } = world;
      world.worker = await startWorker({ databaseUrl: outage.through(t.url), appDatabaseUrl: outage.through(t.appUrl), config, logger, tasks: [held], cronItems: [], serveMetrics: false, pollIntervalMs: 100 });
    },
    enqueue: (value: string) => world.t.db.transaction().execute((tx) => enqueueJob(tx, 'test.held', { value })),
    /** A worker whose runner graphile-worker stopped: the job `hold` ended while the database was away, and its outcome could not be recorded. */
    async runnerStoppedByAnUnrecordedOutcome(): Promise<void> {
      await world.startWorker(2);
      await world.enqueue('hold');
      await gate('hold').started;
      await world.outage.down();
      gate('hold').release();
      await waitFor('graphile-worker to give up on recording it', async () => lines.some((line) => /Failed to complete jobs|Failed to fail jobs/.test(String(line.msg))), 10_000);
    },
    queueLength: async () => (await world.t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n as number,
  };
  before(async () => {
    world.t = await createTestDatabase();
    world.outage = await Outage.inFrontOf(world.t.url);
  });
  after(async () => {
    await world.worker?.stop();
    await world.outage.down();
    await world.t.drop();
  });
  return world;
}


/**
 * The database goes away while a job runs, so the job's outcome cannot be
 * recorded: graphile-worker then stops its whole runner. The worker used to
 * stay like that — `storekeep worker`, with nothing left to do, exited 0 —
 * and ran no job again until someone restarted it.
 */
describe('worker: the database goes away while a job runs', () => {
  const world = heldJobsWorld();
  const { lines, ran } = world;

  it('its runner, stopped because the job could not be recorded, is started again once the database is back: the job runs again at once (not in 4 hours) and new jobs run', { timeout: 60_000 }, async () => {
    // When the database goes away while a job runs, and the job ends (its completion cannot be recorded)
    await world.runnerStoppedByAnUnrecordedOutcome();
    await sleep(500);
    await world.outage.up();

    // Then, once it is back, a new job runs, and so does the held one (its lock freed)
    await world.enqueue('after');
    await waitFor('a job enqueued after the outage to run', async () => ran.get('after') === 1, 20_000, 100);
    await waitFor('the held job to run again', async () => ran.get('hold') === 2, 20_000, 100);
    await waitFor('the queue to be empty', async () => (await world.queueLength()) === 0, 10_000, 100);
    assert.ok(lines.some((line) => line.msg === 'the job runner started again'), JSON.stringify(lines.map((line) => line.msg)));
  });
});

/**
 * The database goes away again just as the runner was started again — its
 * first look at the task list (graphile-worker's getTaskDetails: insert and
 * read `_private_tasks`) is in flight — as when PostgreSQL is killed a
 * moment after it came back from a first crash (test/databaseCrash.e2e.spec.ts).
 * graphile-worker 0.17 keeps that failed look as the answer for the whole
 * runner: every later attempt to take a job fails with the same error (at
 * debug level), the runner never stops, and the worker ran no job again —
 * silently — until someone restarted it.
 */
describe('worker: the database goes away as the runner is started again', () => {
  const world = heldJobsWorld();
  const { lines, ran } = world;

  it('its runner, whose first look at the task list failed, is started again: jobs run once the database is back', { timeout: 60_000 }, async () => {
    // Given a runner stopped because a job's outcome could not be recorded (the database went away)
    await world.runnerStoppedByAnUnrecordedOutcome();
    // When the database comes back, the runner is started again, and the database goes away while the
    // new runner's first look at its tasks waits for its answer
    world.outage.loseAnswers((sent) => sent.includes('_private_tasks'));
    await world.outage.up();
    await waitFor('the runner to be started again', async () => lines.some((line) => line.msg === 'the job runner started again'), 20_000, 10);
    await sleep(500);
    await world.outage.down();
    world.outage.thaw();
    await sleep(300);
    await world.outage.up();

    // Then, once it is back, jobs run again: the held one (its lock freed) and a new one
    await world.enqueue('after');
    await waitFor('a job enqueued after the outage to run', async () => ran.get('after') === 1, 20_000, 100);
    await waitFor('the held job to run again', async () => ran.get('hold') === 2, 20_000, 100);
    await waitFor('the queue to be empty', async () => (await world.queueLength()) === 0, 10_000, 100);
    assert.ok(lines.some((line) => line.msg === 'the job runner was stopped (it could take no job again); starting it again'), JSON.stringify(lines.map((line) => line.msg)));
  });
});

/**
 * Two outcomes the pool could not record, in two batches, before it finished
 * stopping (here: two jobs that end during the outage, then a third that
 * fails). graphile-worker 0.17's batcher counts a failed batch's
 * backpressure once but releases it after every later batch: its count of
 * batches in flight goes below zero, and its release — the last step of the
 * pool's stop — waits for it to come back to zero for ever. The runner's
 * promise never settled, so the runner was never started again, and the
 * worker ran no job again, silently (as in test/databaseCrash.e2e.spec.ts).
 */
describe('worker: two outcomes the stopping pool could not record', () => {
  const world = heldJobsWorld();
  const { lines, ran, gate } = world;

  it('its runner, whose stop could not finish, is started again: jobs run once the database is back', { timeout: 90_000 }, async () => {
    await world.startWorker(3);
    for (const value of ['first', 'second', 'fails']) {
      await world.enqueue(value);
      await gate(value).started;
    }

    // Given the database gone while three jobs run: two end, each completion in a batch of its own that fails, then the third fails
    await world.outage.down();
    const unrecorded = () => lines.filter((line) => /Failed to complete jobs/.test(String(line.msg))).length;
    gate('first').release();
    await waitFor('the first completion to fail', async () => unrecorded() === 1, 10_000, 10);
    gate('second').release();
    await waitFor('the second completion to fail', async () => unrecorded() === 2, 10_000, 10);
    gate('fails').release();
    await waitFor('its failure not to be recorded either', async () => lines.some((line) => /Failed to fail jobs/.test(String(line.msg))), 10_000, 10);
    await sleep(300);
    // When the database is back
    await world.outage.up();

    // Then the runner is started again, and jobs run: a new one, and the three held ones again (their locks freed)
    await world.enqueue('after');
    await waitFor('a job enqueued after the outage to run', async () => ran.get('after') === 1, 40_000, 100);
    await waitFor('the held jobs to run again', async () => ['first', 'second', 'fails'].every((value) => ran.get(value) === 2), 20_000, 100);
    await waitFor('the queue to be empty', async () => (await world.queueLength()) === 0, 10_000, 100);
  });
});
