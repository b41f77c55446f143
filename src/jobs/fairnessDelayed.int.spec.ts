/** Tenants take turns with jobs that wait for their time too (run_at in the future: delayed work, polls, retries). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { enqueueForTenant, startTestWorker } from '../../test/support/worker.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { createJobRunsTable, marked, runsOf as jobRunsOf } from './testkit.js';
import type { RunningWorker } from './worker.js';

describe('the job queue across tenants, with delayed jobs', () => {
  let t: TestApp;
  let a: string;
  let b: string;
  const workers: RunningWorker[] = [];
  before(async () => {
    t = await startTestApp();
    [a, b] = await Promise.all([t.newTenant(), t.newTenant()]).then((tenants) => tenants.map((tenant) => tenant.tenantId));
    await createJobRunsTable(t.admin);
  });
  after(async () => {
    for (const worker of workers) await worker.stop();
    await t.close();
  });

  const runsOf = (run: string) => jobRunsOf(t.admin, run);

  it("a tenant's burst of delayed jobs, once due, does not hold another tenant's job behind it, and runs in its order", async () => {
    // Given tenant A enqueued 40 jobs to run in a moment (a burst of polls scheduled after submissions)
    const runAt = new Date(Date.now() + 1_500);
    for (let seq = 1; seq <= 40; seq++) await enqueueForTenant(t, a, 'test.marked', { run: 'delayed', seq }, { runAt });
    // When they are due and tenant B enqueues one job
    await sleep(runAt.getTime() - Date.now() + 200);
    await enqueueForTenant(t, b, 'test.marked', { run: 'delayed', seq: 1 });
    const worker = await startTestWorker(t, { workerConcurrency: 1, workerMetricsPort: 0 }, [marked]);
    workers.push(worker);
    const runs = await waitFor('all 41 runs', async () => {
      const rows = await runsOf('delayed');
      return rows.length >= 41 && rows;
    });
    await worker.stop();
    // Then B's job ran at the second turn at the latest, not after A's 40
    const position = runs.findIndex((row) => row.tenant_id === b);
    assert.ok(position <= 1, `tenant B's job ran at position ${position + 1} of ${runs.length}`);
    // And A's jobs ran in the order they were enqueued
    assert.deepEqual(
      runs.filter((row) => row.tenant_id === a).map((row) => row.seq),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
  });

  it("with 30,000 of a tenant's jobs waiting for their time, enqueue_job for that tenant passes over them in the index, not reading one heap row each", async (context) => {
    // Given A's 30,000 jobs due in an hour, at turns after its one due job (polls scheduled behind its backlog)
    await t.admin.query(
      `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
         SELECT ROW('test.marked', json_build_object('tenant_id', $1::text, 'data', json_build_object('run', 'plan', 'seq', g)),
                    NULL, now() + CASE WHEN g = 0 THEN interval '-1 minute' ELSE interval '1 hour' END, 5, NULL, least(g, 32767), NULL)::graphile_worker.job_spec
         FROM generate_series(0, 30000) g))`,
      [a],
    );
    await t.admin.query(`ANALYZE graphile_worker._private_jobs`);
    const client = await t.admin.connect();
    try {
      // When A enqueues a due job (as a business transaction does)
      await client.query('BEGIN');
      await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [a]);
      const payload = JSON.stringify({ tenant_id: a, correlation_id: 'plan', attempt: 1, max_attempts: 5, chain_id: 'plan', data: { run: 'plan', seq: -1 } });
      // (the first call plans enqueue_job's statements: the second one's reads are the lookups' and the insert's)
      await client.query(`SELECT enqueue_job('test.marked', $1::jsonb)`, [payload.replace('"seq":-1', '"seq":-2')]);
      const [plan] = (await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT enqueue_job('test.marked', $1::jsonb)`, [payload])).rows;
      const top = plan['QUERY PLAN'][0].Plan as { 'Shared Hit Blocks': number; 'Shared Read Blocks': number };
      const blocks = top['Shared Hit Blocks'] + top['Shared Read Blocks'];
      context.diagnostic(`enqueue_job took ${plan['QUERY PLAN'][0]['Execution Time']} ms`);
      const lookup = (
        await client.query(
          `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT j.priority FROM graphile_worker._private_jobs j
            WHERE j.is_available AND (j.payload ->> 'tenant_id') = $1 AND j.run_at <= now() ORDER BY j.priority DESC LIMIT 1`,
          [a],
        )
      ).rows.map((row) => row['QUERY PLAN']);
      context.diagnostic(lookup.join('\n'));
      const priority = (await client.query(`SELECT priority FROM graphile_worker._private_jobs WHERE payload->'data'->>'seq' = '-1'`)).rows[0].priority;
      await client.query('ROLLBACK');
      context.diagnostic(`enqueue_job read ${blocks} blocks; priority ${priority}`);
      // Then it is placed after A's due jobs, reading the index's pages (~250 here), not the 30,000 jobs' heap rows (~940 pages, 12 ms, before run_at was in the index)
      assert.equal(priority, 2);
      assert.ok(blocks < 400, `enqueue_job read ${blocks} blocks`);
    } finally {
      client.release();
      await t.admin.query(`DELETE FROM graphile_worker._private_jobs`);
    }
  });
});
