import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { capturingLogger } from '../../test/support/logs.js';
import type { IntegrityCheck } from './check.js';
import { CHECK_STATEMENT_TIMEOUT_MS, runChecksAsOwner } from './runChecks.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../core/logger.js';
import type { JobContext } from '../jobs/task.js';
import { WORKER_PRINCIPAL } from '../jobs/task.js';
import { integrityNightly } from './nightlyJob.js';
import { allChecks } from './registry.js';

/**
 * A check reads a shop's whole history; at 1,122,000 sales the slowest took
 * 12–23 s and went past the pools' 30 s statement_timeout under load
 * (bench/RESULTS.md): the nightly run then reported it as check_failed, every
 * night, for good. The nightly run gives each check's read-only transaction
 * a limit of its own (CHECK_STATEMENT_TIMEOUT_MS). Shown here in small: a
 * session limit of 300 ms, a check that takes 600 ms.
 */
describe('the statement limit of a check run', () => {
  let t: TestDatabase;
  let pool: pg.Pool;
  const { logger } = capturingLogger('silent');
  const slowCheck = {
    name: 'test_slow_check',
    severity: 'warning',
    description: 'takes 600 ms and finds nothing',
    // The sleep's result is compared, so the planner cannot leave it out (a constant false filter would skip it).
    sql: `SELECT $1::uuid AS tenant_id, 'x' AS subject, NULL::jsonb AS detail FROM (SELECT pg_sleep(0.6)::text AS slept) s WHERE s.slept = 'never'`,
  } as IntegrityCheck;

  before(async () => {
    t = await createTestDatabase();
    pool = new pg.Pool({ connectionString: t.url, max: 1, options: '-c statement_timeout=300' });
  });
  after(async () => {
    await pool.end();
    await t.drop();
  });

  it('under the session limit, a check that takes longer could not run (check_failed)', async () => {
    const run = await runChecksAsOwner(pool, [slowCheck], { ordersStuckSeconds: 60 }, { logger, correlationId: 'check-timeout-1' });
    assert.deepEqual(run.findings.map((finding) => [finding.check, finding.subject]), [['test_slow_check', 'check_failed']]);
  });

  it('with statementTimeoutMs, the check runs to its end and finds nothing; the session keeps its own limit after it', async () => {
    const run = await runChecksAsOwner(pool, [slowCheck], { ordersStuckSeconds: 60, statementTimeoutMs: 5_000 }, { logger, correlationId: 'check-timeout-2' });
    assert.deepEqual(run.findings, []);
    const client = await pool.connect();
    try {
      assert.equal((await client.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout, '300ms');
    } finally {
      client.release();
    }
  });

  it('the nightly job runs the checks on the check pool, each under CHECK_STATEMENT_TIMEOUT_MS', async () => {
    // Given the worker's check pool, whose statements are recorded
    const checkPool = new pg.Pool({ connectionString: t.url, max: 1 });
    const limits: unknown[] = [];
    checkPool.on('acquire', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        if (typeof args[0] === 'string' && args[0].includes(`set_config('statement_timeout'`)) limits.push((args[1] as unknown[])[1]);
        return query(...args);
      };
    });
    const lines: string[] = [];
    try {
      const ctx = {
        db: t.db,
        ownerPool: t.admin,
        checkPool,
        config: loadConfig({ LOG_LEVEL: 'silent' }),
        logger: createLogger('info', 'storekeep', { write: (line: string) => void lines.push(line) }),
        correlationId: 'check-timeout-nightly',
        principal: WORKER_PRINCIPAL,
        tenantId: null,
      } as unknown as JobContext;
      // When the nightly run runs
      await integrityNightly.handle({}, ctx);
      // Then every check ran there with the nightly limit, and found nothing in an empty database
      assert.deepEqual(limits, allChecks.map(() => String(CHECK_STATEMENT_TIMEOUT_MS)));
      const finished = lines.map((line) => JSON.parse(line) as { msg?: string; checks?: number; findings?: number }).find((line) => line.msg === 'integrity run finished');
      assert.deepEqual([finished?.checks, finished?.findings], [allChecks.length, 0]);
    } finally {
      await checkPool.end();
    }
  });
});
