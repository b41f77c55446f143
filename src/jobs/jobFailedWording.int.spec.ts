import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { runInScope } from '../core/context.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { capturingLogger } from '../../test/support/logs.js';
import { enqueueForTenant } from '../../test/support/worker.js';
import { waitFor } from '../../test/support/wait.js';
import { jobFailedWording } from './runJob.js';
import { defineTask, PermanentJobError } from './task.js';
import { startWorker, type RunningWorker } from './worker.js';

/**
 * A job's error may quote the database (SQL, table and column names), a
 * provider's answer or internal ids; a `job_failed` review item is read by a
 * tenant's staff (review.read). The item says which job gave up, after how
 * many attempts, and where its cause is: the server log, under the item's
 * correlation_id — where the worker logs the error at error level.
 */

/** What the failing job's error says: none of it may reach a review item. */
const RAW = 'duplicate key value violates unique constraint "secret_table_pkey" — INSERT INTO secret_table (token) VALUES ($1) — provider said {"api_key":"sk_live_123"}';
const LEAKS = /secret_table|INSERT INTO|duplicate key|api_key|sk_live|constraint/i;

const failing = defineTask<{ value: string; permanent?: boolean }>({
  name: 'test.leaky',
  maxAttempts: 2,
  async handle(data) {
    if (data.permanent) throw new PermanentJobError(`${RAW} (${data.value})`);
    throw new Error(`${RAW} (${data.value})`);
  },
});

describe('a job_failed review item', () => {
  const { logger, lines: logs } = capturingLogger('error');
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let worker: RunningWorker;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    worker = await startWorker({
      databaseUrl: t.url,
      appDatabaseUrl: t.appUrl,
      config: { ...loadConfig({ LOG_LEVEL: 'silent' }), jobRetryBaseMs: 20, jobRetryMaxMs: 100 },
      logger,
      tasks: [failing],
      cronItems: [],
      serveMetrics: false,
      pollIntervalMs: 100,
    });
  });
  after(async () => {
    await worker?.stop();
    await t.close();
  });

  async function itemOf(value: string): Promise<{ id: string; detail: Record<string, unknown> }> {
    const row = await waitFor(
      `the job_failed item of ${value}`,
      async () => (await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'job_failed' AND detail->'data'->>'value' = $2`, [tenantId, value])).rows[0],
      20_000,
    );
    const read = await owner.get(`/v1/review-items/${row.id}`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    return read.body;
  }

  it('after its last attempt: says which job, how many attempts and the correlation id, not the error; the error is logged under that id', async () => {
    // Given a tenant's job whose every attempt fails with an error quoting SQL and a provider's answer
    await runInScope({ correlationId: 'corr-leaky-1' }, () => enqueueForTenant(t, tenantId, 'test.leaky', { value: 'retried' }));
    // When it gives up
    const item = await itemOf('retried');
    // Then the item, as the tenant reads it, names the job, its attempts and the correlation id, and holds none of the error
    assert.doesNotMatch(JSON.stringify(item), LEAKS, JSON.stringify(item));
    assert.equal(item.detail.error, jobFailedWording('test.leaky', 2, 2, 'last_attempt'));
    assert.equal(item.detail.error, 'the job test.leaky failed at its last attempt (2 of 2); its cause is in the server log under correlation_id');
    assert.equal(item.detail.correlation_id, 'corr-leaky-1');
    assert.equal(item.detail.task, 'test.leaky');
    assert.equal(item.detail.attempts, 2);
    assert.equal(item.detail.max_attempts, 2);
    // And the list shows the same
    const list = await owner.get('/v1/review-items?limit=500');
    assert.equal(list.status, 200);
    assert.doesNotMatch(JSON.stringify(list.body), LEAKS);
    // And the log has the error at error level under that correlation id, with the job's task and id
    const logged = await waitFor('the give-up logged', async () =>
      logs.find((line) => line.correlation_id === 'corr-leaky-1' && JSON.stringify(line.err ?? '').includes('secret_table_pkey')),
    );
    assert.equal(logged.level, 50, 'at error level');
    assert.equal(logged.task, 'test.leaky');
    assert.ok(logged.job_id, JSON.stringify(logged));
    assert.match(String((logged.err as { message: string }).message), /INSERT INTO secret_table .*\(retried\)$/);
  });

  it('a permanent failure: the same, at its first attempt', async () => {
    await runInScope({ correlationId: 'corr-leaky-2' }, () => enqueueForTenant(t, tenantId, 'test.leaky', { value: 'permanent', permanent: true }));
    const item = await itemOf('permanent');
    assert.doesNotMatch(JSON.stringify(item), LEAKS, JSON.stringify(item));
    assert.equal(item.detail.error, 'the job test.leaky failed permanently at attempt 1 of 2; its cause is in the server log under correlation_id');
    assert.equal(item.detail.correlation_id, 'corr-leaky-2');
    const logged = logs.find((line) => line.correlation_id === 'corr-leaky-2' && JSON.stringify(line.err ?? '').includes('(permanent)'));
    assert.ok(logged, `no error line under corr-leaky-2 in ${JSON.stringify(logs)}`);
    assert.equal(logged.level, 50, 'at error level');
  });
  it('an item opened before (holding the raw error): migration 0910 gives it the fixed wording and keeps the error where only the owner reads it', async () => {
    // Given an item as the code before 0910 opened it: the raw error in detail.error
    await runInScope({ correlationId: 'corr-leaky-3' }, () => enqueueForTenant(t, tenantId, 'test.leaky', { value: 'old-item' }));
    const opened = await itemOf('old-item');
    await withTriggersOff(t.admin, [[`UPDATE review_items SET detail = jsonb_set(detail, '{error}', to_jsonb($2::text)) WHERE id = $1`, [opened.id, RAW]]]);
    assert.match(JSON.stringify((await owner.get(`/v1/review-items/${opened.id}`)).body), LEAKS, 'the old item shows the error');
    // When the migration's rewrite runs (0910 calls it once; a second call changes nothing)
    const first = await t.admin.query<{ n: string }>('SELECT withhold_job_failed_errors() AS n');
    assert.equal(Number(first.rows[0]!.n), 1, 'the one item holding a raw error');
    assert.equal(Number((await t.admin.query<{ n: string }>('SELECT withhold_job_failed_errors() AS n')).rows[0]!.n), 0);
    // Then the tenant reads the wording, the correlation id and the rest as before, and none of the error
    const read = await owner.get(`/v1/review-items/${opened.id}`);
    assert.equal(read.status, 200);
    assert.doesNotMatch(JSON.stringify(read.body), LEAKS, JSON.stringify(read.body));
    assert.deepEqual(read.body.detail, {
      ...opened.detail,
      error: 'the job test.leaky gave up at attempt 2 of 2; its cause is in the server log under correlation_id',
    });
    // And the error is kept, for the owner only: the app role (every request) may not read it
    const kept = await t.admin.query('SELECT tenant_id, error FROM review_item_withheld_errors WHERE review_item_id = $1', [opened.id]);
    assert.deepEqual(kept.rows, [{ tenant_id: tenantId, error: RAW }]);
    await assert.rejects(
      t.appPool.query('SELECT error FROM review_item_withheld_errors'),
      (error: Error) => /permission denied/.test(error.message),
    );
    // And the items' detail is immutable again
    await assert.rejects(t.admin.query(`UPDATE review_items SET detail = '{}' WHERE id = $1`, [opened.id]), /immutable/);
  });
});
