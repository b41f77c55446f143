/** Tenants take turns in the queue: one tenant's backlog does not hold every other tenant's jobs behind it. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { enqueueForTenant, startTestWorker } from '../../test/support/worker.js';
import { nodesOf, type PlanNode } from '../../test/support/plans.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { defineTask } from './task.js';
import { createJobRunsTable, marked, runsOf as jobRunsOf, type Mark } from './testkit.js';
import type { RunningWorker } from './worker.js';

describe('the job queue across tenants', () => {
  let t: TestApp;
  let a: string;
  let b: string;
  let c: string;
  const workers: RunningWorker[] = [];
  before(async () => {
    t = await startTestApp();
    [a, b, c] = await Promise.all([t.newTenant(), t.newTenant(), t.newTenant()]).then((tenants) => tenants.map((tenant) => tenant.tenantId));
    await createJobRunsTable(t.admin);
  });
  after(async () => {
    for (const worker of workers) await worker.stop();
    await t.close();
  });

  const runsOf = (run: string) => jobRunsOf(t.admin, run);

  it("a tenant's one job is not queued behind another tenant's backlog, and each tenant's jobs keep their order", async () => {
    // Given tenant A enqueued 60 due jobs (a burst of submissions), then tenant B one
    for (let seq = 1; seq <= 60; seq++) await enqueueForTenant(t, a, 'test.marked', { run: 'burst', seq });
    await enqueueForTenant(t, b, 'test.marked', { run: 'burst', seq: 1 });
    // When one worker with one slot runs them
    const worker = await startTestWorker(t, { workerConcurrency: 1, workerMetricsPort: 0 }, [marked]);
    workers.push(worker);
    const runs = await waitFor('all 61 runs', async () => {
      const rows = await runsOf('burst');
      return rows.length >= 61 && rows;
    });
    await worker.stop();
    // Then B's job ran at the second turn at the latest, not after A's 60
    const position = runs.findIndex((row) => row.tenant_id === b);
    assert.ok(position <= 1, `tenant B's job ran at position ${position + 1} of ${runs.length}`);
    // And A's jobs ran in the order they were enqueued, each once
    assert.deepEqual(
      runs.filter((row) => row.tenant_id === a).map((row) => row.seq),
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
  });

  it('a tenant that enqueues while another drains its backlog takes turns with it', async () => {
    // Given A's backlog of 40 jobs is being drained by one worker slot
    for (let seq = 1; seq <= 40; seq++) await enqueueForTenant(t, a, 'test.marked', { run: 'drain', seq });
    const worker = await startTestWorker(t, { workerConcurrency: 1, workerMetricsPort: 0 }, [marked]);
    workers.push(worker);
    await waitFor('A half drained', async () => (await runsOf('drain')).length >= 10);
    // When B and C enqueue 5 jobs each
    for (let seq = 1; seq <= 5; seq++) {
      await enqueueForTenant(t, b, 'test.marked', { run: 'drain', seq });
      await enqueueForTenant(t, c, 'test.marked', { run: 'drain', seq });
    }
    const runs = await waitFor('all 50 runs', async () => {
      const rows = await runsOf('drain');
      return rows.length >= 50 && rows;
    });
    await worker.stop();
    // Then B's and C's jobs all ran before A's backlog was done (they took turns with it), each tenant in its own order
    const lastOf = (tenant: string) => runs.map((row) => row.tenant_id).lastIndexOf(tenant);
    assert.ok(lastOf(b) < lastOf(a) && lastOf(c) < lastOf(a), `B last at ${lastOf(b)}, C at ${lastOf(c)}, A at ${lastOf(a)} of ${runs.length}`);
    for (const [tenant, n] of [[a, 40], [b, 5], [c, 5]] as const) {
      assert.deepEqual(
        runs.filter((row) => row.tenant_id === tenant).map((row) => row.seq),
        Array.from({ length: n }, (_, i) => i + 1),
      );
    }
  });

  it('workers claiming at once never run one job twice', async () => {
    // Given 300 due jobs of three tenants
    for (let seq = 1; seq <= 100; seq++) {
      await Promise.all([a, b, c].map((tenant) => enqueueForTenant(t, tenant, 'test.marked', { run: 'race', seq })));
    }
    // When three workers of four slots each claim them at once
    const racing = await Promise.all([1, 2, 3].map(() => startTestWorker(t, { workerConcurrency: 4, workerMetricsPort: 0 }, [marked])));
    workers.push(...racing);
    await waitFor('all 300 runs', async () => (await runsOf('race')).length >= 300, 30_000);
    await sleep(300);
    await Promise.all(racing.map((worker) => worker.stop()));
    // Then each job ran exactly once, and none is left in the queue
    const counts = await t.admin.query(
      `SELECT count(*)::int AS runs, count(DISTINCT job_id)::int AS jobs, count(DISTINCT (tenant_id, seq))::int AS distinct_marks FROM test_job_runs WHERE run = 'race'`,
    );
    assert.deepEqual(counts.rows[0], { runs: 300, jobs: 300, distinct_marks: 300 });
    const left = await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs`);
    assert.equal(left.rows[0].n, 0);
  });

  it("a keyed job enqueued again with preserve_run_at keeps its turn, and a retry keeps its job's turn", async () => {
    const priorityOf = async (key: string) =>
      (await t.admin.query<{ priority: number }>(`SELECT priority FROM graphile_worker._private_jobs WHERE key = $1`, [key])).rows[0]?.priority;
    // Given A's keyed job at the first turn, then two more of A's jobs behind it
    await enqueueForTenant(t, a, 'test.marked', { run: 'keyed', seq: 1 }, { jobKey: 'keyed-1' });
    await enqueueForTenant(t, a, 'test.marked', { run: 'keyed', seq: 2 });
    await enqueueForTenant(t, a, 'test.marked', { run: 'keyed', seq: 3 });
    assert.equal(await priorityOf('keyed-1'), 0);
    // When the keyed job is enqueued again, keeping its time
    await enqueueForTenant(t, a, 'test.marked', { run: 'keyed', seq: 1 }, { jobKey: 'keyed-1', jobKeyMode: 'preserve_run_at' });
    // Then it keeps its turn too (not moved behind the two)
    assert.equal(await priorityOf('keyed-1'), 0);
    await t.admin.query(`DELETE FROM graphile_worker._private_jobs`);

    // Given a failing job of A at its third turn
    let failed = false;
    const flaky = defineTask<Mark>({
      name: 'test.flaky',
      async handle() {
        failed = true;
        throw new Error('provider said 503');
      },
    });
    await enqueueForTenant(t, a, 'test.marked', { run: 'retry', seq: 1 });
    await enqueueForTenant(t, a, 'test.marked', { run: 'retry', seq: 2 });
    await enqueueForTenant(t, a, 'test.flaky', { run: 'retry', seq: 3 }, { jobKey: 'flaky-1' });
    assert.equal(await priorityOf('flaky-1'), 2);
    // When it fails and its retry is scheduled (a minute away)
    const worker = await startTestWorker(t, { workerConcurrency: 1, workerMetricsPort: 0, jobRetryBaseMs: 60_000, jobRetryMaxMs: 60_000 }, [marked, flaky]);
    workers.push(worker);
    const retry = await waitFor('the retry', async () => {
      const rows = (await t.admin.query(`SELECT priority, payload->>'attempt' AS attempt FROM graphile_worker._private_jobs WHERE key = 'flaky-1'`)).rows;
      return failed && rows[0]?.attempt === '2' && rows[0];
    });
    await worker.stop();
    // Then the retry has the job's turn, not priority 0 ahead of every tenant's turn
    assert.equal(retry.priority, 2);
    await t.admin.query(`DELETE FROM graphile_worker._private_jobs`);
  });

  it("with 40,000 jobs waiting (30,000 of one tenant) the claim and enqueue_job's turn lookups read an index, a few rows", async (context) => {
    // Given 30,000 due jobs of A at turns 0…29,999, 5,000 due of B, 5,000 of B due in an hour
    await t.admin.query(
      `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
         SELECT ROW('test.marked', json_build_object('tenant_id', CASE WHEN g <= 30000 THEN $1 ELSE $2 END, 'data', json_build_object('run', 'plan', 'seq', g)),
                    NULL, now() - interval '1 minute' + CASE WHEN g > 35000 THEN interval '1 hour' ELSE interval '0' END, 5, NULL,
                    CASE WHEN g <= 30000 THEN g - 1 ELSE (g - 30000) % 5000 END, NULL)::graphile_worker.job_spec
         FROM generate_series(1, 40000) g))`,
      [a, b],
    );
    await t.admin.query(`ANALYZE graphile_worker._private_jobs`);
    const taskIds = (await t.admin.query(`SELECT array_agg(id) AS ids FROM graphile_worker._private_tasks WHERE identifier = 'test.marked'`)).rows[0].ids;
    const client = await t.admin.connect();
    const planOf = async (label: string, text: string, values: unknown[]): Promise<PlanNode[]> => {
      await client.query('BEGIN');
      try {
        const [json] = (await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values)).rows;
        const shown = (await client.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) ${text}`, values)).rows.map((row) => row['QUERY PLAN']);
        context.diagnostic(`${label}:\n${shown.join('\n')}`);
        return nodesOf(json['QUERY PLAN'][0].Plan as PlanNode);
      } finally {
        await client.query('ROLLBACK');
      }
    };
    try {
      // When the queue claims a job: graphile-worker 0.17's get_job as it sends it (batch of 1, named-queue strategy 2)
      const claim = await planOf(
        'claim',
        `with j as (
           select jobs.job_queue_id, jobs.priority, jobs.run_at, jobs.id
             from graphile_worker._private_jobs as jobs
             where jobs.is_available = true and run_at <= now() and task_id = any($2::int[])
             and (jobs.job_queue_id is null or jobs.job_queue_id in (
               select id from graphile_worker._private_job_queues as job_queues where job_queues.is_available = true for update skip locked))
             order by priority asc, run_at asc limit 1
             for update skip locked
         ), q as (
           update graphile_worker._private_job_queues as job_queues set locked_by = $1::text, locked_at = now() from j where job_queues.id = j.job_queue_id
         )
         update graphile_worker._private_jobs as jobs set attempts = jobs.attempts + 1, locked_by = $1::text, locked_at = now()
           from j where jobs.id = j.id returning *`,
        ['plan-worker', taskIds],
      );
      // And when enqueue_job finds the current turn and a tenant's last due waiting job
      const turn = await planOf(
        'current turn',
        `SELECT j.priority FROM graphile_worker._private_jobs j WHERE j.is_available AND j.run_at <= now() ORDER BY j.priority, j.run_at LIMIT 1`,
        [],
      );
      const last = await planOf(
        "tenant's last due job",
        `SELECT j.priority FROM graphile_worker._private_jobs j
          WHERE j.is_available AND (j.payload ->> 'tenant_id') = $1 AND j.run_at <= greatest(coalesce($3::timestamptz, now()), now()) AND ($2::text IS NULL OR j.key IS DISTINCT FROM $2)
          ORDER BY j.priority DESC LIMIT 1`,
        [b, null, null],
      );
      // Then each reads the jobs through an index, never the whole table, and touches a handful of rows
      for (const [label, plan, index] of [
        ['claim', claim, /^jobs_(main|no_queue)_index$/],
        ['current turn', turn, /^jobs_(main|no_queue)_index$/],
        ["tenant's last due job", last, /^storekeep_jobs_tenant_turn_due_idx$/],
      ] as const) {
        const jobsScans = plan.filter((node) => node['Relation Name'] === '_private_jobs');
        assert.ok(jobsScans.length > 0 && jobsScans.every((node) => node['Node Type'] !== 'Seq Scan' && !node['Node Type'].startsWith('Bitmap')), `${label}: ${JSON.stringify(jobsScans)}`);
        assert.ok(jobsScans.some((node) => index.test(node['Index Name'] ?? '')), `${label}: ${JSON.stringify(jobsScans)}`);
        assert.ok(jobsScans.every((node) => (node['Actual Rows'] ?? 0) <= 2), `${label}: ${JSON.stringify(jobsScans)}`);
      }
    } finally {
      client.release();
      await t.admin.query(`DELETE FROM graphile_worker._private_jobs`);
    }
  });
});
