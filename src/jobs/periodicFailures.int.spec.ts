/** A periodic task that keeps failing: one open job_failed item, counting its give-ups, not one per tick. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JobHelpers } from 'graphile-worker';
import { SYSTEM_TENANT_ID } from '../core/auth.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { startTestWorker } from '../../test/support/worker.js';
import { waitFor } from '../../test/support/wait.js';
import { runJob } from './runJob.js';
import { defineTask } from './task.js';
import type { RunningWorker } from './worker.js';

const failing = (name: string, maxAttempts: number) =>
  defineTask<unknown>({
    name,
    maxAttempts,
    async handle() {
      throw new Error(`${name} cannot reach its store`);
    },
  });
const tick = failing('test.tick', 1);
const nightly = failing('test.nightly', 2);
const raced = failing('test.raced', 1);

interface ItemRow {
  id: string;
  status: string;
  seen_count: number;
  op_id: string;
  last_seen_op: string | null;
  created_at: Date;
  last_seen_at: Date;
}

describe('a periodic task that keeps failing', () => {
  let t: TestApp;
  let worker: RunningWorker;
  before(async () => {
    t = await startTestApp();
    worker = await startTestWorker(t, { jobRetryBaseMs: 20, jobRetryMaxMs: 50, workerMetricsPort: 0 }, [tick, nightly, raced]);
  });
  after(async () => {
    await worker?.stop();
    await t.close();
  });

  const itemsOf = async (task: string): Promise<ItemRow[]> =>
    (
      await t.admin.query<ItemRow>(
        `SELECT id, status, seen_count, op_id, last_seen_op, created_at, last_seen_at FROM review_items
          WHERE tenant_id = $1 AND kind = 'job_failed' AND detail->>'task' = $2 ORDER BY created_at, id`,
        [SYSTEM_TENANT_ID, task],
      )
    ).rows;
  /** Waits until `task`'s give-ups add up to `n` over its items (each item counts its own). */
  const giveUps = (task: string, n: number) =>
    waitFor(`${n} give-ups of ${task}`, async () => (await itemsOf(task)).reduce((sum, item) => sum + item.seen_count, 0) >= n, 20_000);
  /** A tick as the worker's timer adds it (job key: the task's name). */
  const timerTick = (task: string) =>
    t.admin.query(`SELECT graphile_worker.add_job($1, '{}'::json, job_key => $1, job_key_mode => 'preserve_run_at', max_attempts => 1)`, [task]);
  /** A tick as graphile-worker's cron adds it (a `_cron` payload, no key). */
  const cronTick = (task: string, ts: string) =>
    t.admin.query(`SELECT graphile_worker.add_job($1, json_build_object('_cron', json_build_object('ts', $2::text, 'backfilled', false)))`, [task, ts]);

  it('three failing timer ticks leave one open item seen three times, naming the last give-up', async () => {
    // Given a periodic task whose every tick fails (one attempt each)
    // When three ticks give up, one after the other
    for (let n = 1; n <= 3; n++) {
      await timerTick('test.tick');
      await giveUps('test.tick', n);
    }
    // Then there is one open item, seen three times, its last sighting the third give-up's operation
    const items = await itemsOf('test.tick');
    assert.equal(items.length, 1, JSON.stringify(items));
    const [item] = items;
    assert.equal(item!.status, 'open');
    assert.equal(item!.seen_count, 3);
    assert.ok(item!.last_seen_op !== null && item!.last_seen_op !== item!.op_id, JSON.stringify(item));
    assert.ok(item!.last_seen_at > item!.created_at);
    const op = await t.admin.query(`SELECT type, correlation_id FROM operations WHERE tenant_id = $1 AND id = $2`, [SYSTEM_TENANT_ID, item!.last_seen_op]);
    assert.equal(op.rows[0]?.type, 'job.give_up');
  });

  it('cron ticks that fail after their retries fold into one item; once it is resolved, the next failure opens a new one', async () => {
    // Given a nightly task (two attempts: its retry keeps the tick's envelope) that keeps failing
    await cronTick('test.nightly', '2026-12-01T00:20:00Z');
    await giveUps('test.nightly', 1);
    await cronTick('test.nightly', '2026-12-02T00:20:00Z');
    await giveUps('test.nightly', 2);
    let items = await itemsOf('test.nightly');
    assert.equal(items.length, 1, JSON.stringify(items));
    assert.equal(items[0]!.seen_count, 2);
    // When someone resolves the item and the next night fails again
    await t.admin.query(`UPDATE review_items SET status = 'resolved', resolved_at = now() WHERE tenant_id = $1 AND id = $2`, [SYSTEM_TENANT_ID, items[0]!.id]);
    await cronTick('test.nightly', '2026-12-03T00:20:00Z');
    await giveUps('test.nightly', 3);
    // Then the resolved item is left as it was and a new one is open, seen once
    items = await itemsOf('test.nightly');
    assert.deepEqual(
      items.map((item) => [item.status, item.seen_count]),
      [
        ['resolved', 2],
        ['open', 1],
      ],
    );
  });

  it('eight ticks of one task giving up at once leave one open item seen eight times', async () => {
    // Given eight runs of a periodic task (eight different ticks), each failing its only attempt
    const helpersOf = (id: number) =>
      ({
        job: { id: String(900_000 + id), attempts: 1, max_attempts: 5, key: null, priority: 0 },
        addJob: async () => assert.fail('a job with no attempts left schedules no retry'),
      }) as unknown as JobHelpers;
    // When they all give up at the same time, on separate connections
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => runJob(raced, { _cron: { ts: `2026-12-01T00:0${i}:00Z`, backfilled: false } }, helpersOf(i), worker.deps)),
    );
    // Then one item is open for the task, and it counts all eight
    const items = await itemsOf('test.raced');
    assert.deepEqual(
      items.map((item) => [item.status, item.seen_count]),
      [['open', 8]],
    );
    const ops = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'job.give_up' AND correlation_id LIKE 'cron:test.raced:%'`, [SYSTEM_TENANT_ID]);
    assert.equal(ops.rows[0].n, 8);
  });
});
