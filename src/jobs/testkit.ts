import type pg from 'pg';
import { sleep } from '../../test/support/wait.js';
import { defineTask } from './task.js';

/** The job queue tests' job: which run of a test it belongs to and its number in its tenant's sequence. */
export interface Mark {
  run: string;
  seq: number;
}

/** Each run records itself in test_job_runs (no key: a job run twice shows as two rows). */
export const marked = defineTask<Mark>({
  name: 'test.marked',
  async handle(data, ctx) {
    await ctx.ownerPool.query(`INSERT INTO test_job_runs (run, tenant_id, seq, job_id) VALUES ($1, $2, $3, $4)`, [data.run, ctx.tenantId, data.seq, ctx.jobId]);
    await sleep(2);
  },
});

/** The table `marked` records its runs in, on a test file's database. */
export async function createJobRunsTable(admin: pg.Pool): Promise<void> {
  await admin.query(`CREATE TABLE test_job_runs (n bigserial, run text NOT NULL, tenant_id uuid, seq integer NOT NULL, job_id text NOT NULL)`);
}

/** The runs of one test run, in the order they ran. */
export async function runsOf(admin: pg.Pool, run: string): Promise<Array<{ tenant_id: string; seq: number; job_id: string }>> {
  return (await admin.query<{ tenant_id: string; seq: number; job_id: string }>(`SELECT tenant_id, seq, job_id FROM test_job_runs WHERE run = $1 ORDER BY n`, [run])).rows;
}
