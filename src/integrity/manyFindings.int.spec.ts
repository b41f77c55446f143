import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { allChecks } from './registry.js';
import { runChecksAsOwner, runChecksForTenant } from './runChecks.js';
import { testCheckLog } from '../../test/support/integrity.js';

const settings = { ordersStuckSeconds: 600 };

/**
 * A corruption of a whole table (a bad manual fix, a broken migration) gives
 * a check hundreds of thousands of rows: it must still report each of them
 * under its tenant, not fail as a check that cannot run.
 */
describe('integrity checks with very many findings', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('a check returning 200,000 findings reports them all, in the owner run and the tenant run', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await owner.post('/v1/stores', { code: 'MF', name: 'Many' });
    assert.equal(store.status, 201);
    const opId = (await t.admin.query(`SELECT op_id FROM stores WHERE id = $1`, [store.body.id])).rows[0].op_id;
    const count = 200_000;
    const client = await t.admin.connect();
    try {
      // Ledger rows whose balance rows do not exist: one finding per (store, SKU).
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(
        `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind)
         SELECT $1, $2, gen_random_uuid(), $3, 1, 1, 'adjustment' FROM generate_series(1, $4)`,
        [tenantId, store.body.id, opId, count],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const checks = allChecks.filter((check) => check.name === 'stock_ledger_matches_balance');
    for (const run of [await runChecksAsOwner(t.admin, checks, settings, testCheckLog), await runChecksForTenant(t.db, tenantId, checks, settings, testCheckLog)]) {
      const failed = run.findings.filter((finding) => finding.subject === 'check_failed');
      assert.deepEqual(failed, []);
      assert.equal(run.findings.length, count);
      assert.ok(run.findings.every((finding) => finding.tenant_id === tenantId && finding.check === 'stock_ledger_matches_balance'));
    }
  });
});
