import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { createLogger } from '../core/logger.js';
import { isConnectionFailure } from '../core/pgErrors.js';
import type { IntegrityCheck } from './check.js';
import { runChecksAsOwner, runChecksForTenant } from './runChecks.js';

/**
 * The database lost in the middle of a run is "we could not check" (storekeep
 * check: exit 2; GET /v1/integrity: 503; the nightly job: a retry) — not a
 * check_failed finding for that check and every one after it, as if the data
 * were wrong (exit 1, critical items in the review queue).
 */
describe('integrity checks that lose the database mid-run', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(() => t.drop());

  // A check that runs a moment; meanwhile its connection is ended from outside (as a restart or a failover would).
  const slow: IntegrityCheck = {
    name: 'test_slow',
    severity: 'critical',
    description: 'takes a second',
    sql: `SELECT NULL::uuid AS tenant_id, NULL::text AS subject, NULL::jsonb AS detail FROM pg_sleep(1) WHERE random() < 0 AND ($1::uuid IS NULL OR true) /* test_slow */`,
  };
  /** Ends, from the owner's pool, the connections running the slow check, once one is seen running it. */
  const endTheSlowCheck = async () => {
    for (let tries = 0; tries < 100; tries++) {
      const { rows } = await t.admin.query(
        `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%/* test_slow */%' AND state = 'active'`,
      );
      if (rows.length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('the slow check never ran');
  };
  const quiet: IntegrityCheck = {
    name: 'test_finds_nothing',
    severity: 'critical',
    description: 'finds nothing',
    sql: `SELECT NULL::uuid AS tenant_id, NULL::text AS subject, NULL::jsonb AS detail WHERE false AND $1::uuid IS NULL`,
  };
  const log = { logger: createLogger('silent'), correlationId: 'corr-database-lost' };

  it('over every tenant (storekeep check, the nightly job): the run fails with the connection error, no findings', async () => {
    const pool = new pg.Pool({ connectionString: t.url, max: 1 });
    pool.on('error', () => undefined);
    try {
      const [run] = await Promise.allSettled([runChecksAsOwner(pool, [quiet, slow, quiet, quiet], { ordersStuckSeconds: 600 }, log), endTheSlowCheck()]);
      assert.equal(run.status, 'rejected', JSON.stringify(run));
      assert.ok(isConnectionFailure(run.reason), String(run.reason));
    } finally {
      await pool.end().catch(() => undefined);
    }
  });

  it("over one tenant (GET /v1/integrity): the same — the request's error (503), no findings", async () => {
    const [run] = await Promise.allSettled([
      runChecksForTenant(t.db, '00000000-0000-0000-0000-000000000001', [quiet, slow, quiet], { ordersStuckSeconds: 600 }, log),
      endTheSlowCheck(),
    ]);
    assert.equal(run.status, 'rejected', JSON.stringify(run));
    assert.ok(isConnectionFailure(run.reason), String(run.reason));
  });
});
