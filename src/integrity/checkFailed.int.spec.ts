import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { capturingLogger } from '../../test/support/logs.js';
import { waitFor } from '../../test/support/wait.js';
import { startWorker } from '../jobs/worker.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { allChecks } from './registry.js';
import { CHECK_COULD_NOT_RUN } from './runChecks.js';
import { integrityNightly } from './nightlyJob.js';

/**
 * A check that cannot run (a privilege revoked, a table renamed, a bug in its
 * SQL) is reported as a finding of its own, `check_failed` — but what the
 * database said is the server's business: API.md, "a server error never leaks
 * a stack trace or SQL". The finding says the check could not run and names
 * the correlation id; the error itself is logged under that id.
 */

/** Only stock_snapshot_matches_ledger reads stock_snapshots (asserted below), so only it fails. */
const FAILING_CHECK = 'stock_snapshot_matches_ledger';
/** What a database error or a check's SQL would show: none of it may reach an answer or a review item. */
const LEAKS = /stock_snapshots|permission|denied|\brelation\b|does not exist|\bselect\b|sqlstate|42501|42P01|\bat .*\.ts/i;

describe('a check that cannot run', () => {
  const { logger, lines: logs } = capturingLogger('error');
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp({}, { logger });
    ({ owner, tenantId } = await t.newTenant());
    // Given a shop with two real problems, one found by a check that runs before the failing one
    // (the balance) and one by a check after it (the sale's total).
    const store = await givenStore(owner, 'CF');
    const sku = await givenSku(owner, 'NAILS');
    await givenStock(owner, store, [{ sku_id: sku, quantity: 10 }]);
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    await withTriggersOff(t.admin, [
      ['UPDATE stock_balances SET quantity = quantity + 5 WHERE tenant_id = $1', [tenantId]],
      ['UPDATE sales SET total = total + 1 WHERE tenant_id = $1', [tenantId]],
    ]);
  });
  after(() => t.close());

  it('only one check reads the table this test takes away', () => {
    const readers = allChecks.filter((check) => /\bstock_snapshots\b/.test(check.sql)).map((check) => check.name);
    assert.deepEqual(readers, [FAILING_CHECK]);
    const names = allChecks.map((check) => check.name);
    assert.ok(names.indexOf('stock_ledger_matches_balance') < names.indexOf(FAILING_CHECK));
    assert.ok(names.indexOf('sale_total_matches_items') > names.indexOf(FAILING_CHECK));
  });

  it('GET /v1/integrity: the finding says the check could not run and names the correlation id; no SQL or database error; the other checks still run; the error is logged', async () => {
    // The API runs the checks as the app role: without SELECT on stock_snapshots (in this test's database only),
    // that one check fails in PostgreSQL ("permission denied for table stock_snapshots").
    await t.admin.query('REVOKE SELECT ON stock_snapshots FROM storekeep_app');
    try {
      const response = await owner.get('/v1/integrity', { headers: { 'x-correlation-id': 'corr-check-failed-1' } });
      assert.equal(response.status, 200);
      assert.equal(response.body.ok, false);
      const failed = response.body.findings.filter((finding: { subject: string }) => finding.subject === 'check_failed');
      assert.deepEqual(failed, [
        { check: FAILING_CHECK, severity: 'critical', subject: 'check_failed', detail: { error: CHECK_COULD_NOT_RUN, correlation_id: 'corr-check-failed-1' } },
      ]);
      assert.doesNotMatch(JSON.stringify(response.body), LEAKS);
      // the checks before and after the failing one ran and reported
      const checks = new Set(response.body.findings.map((finding: { check: string }) => finding.check));
      assert.ok(checks.has('stock_ledger_matches_balance'), JSON.stringify([...checks]));
      assert.ok(checks.has('sale_total_matches_items'), JSON.stringify([...checks]));
      // the database's own words are in the log, under the request's correlation id
      const logged = logs.filter((line) => line.correlation_id === 'corr-check-failed-1' && line.check === FAILING_CHECK);
      assert.equal(logged.length, 1, JSON.stringify(logs));
      assert.equal(logged[0]!.level, 50);
      assert.equal(logged[0]!.tenant_id, tenantId);
      assert.match(String((logged[0]!.err as { message?: string }).message), /permission denied for table stock_snapshots/);
    } finally {
      await t.admin.query('GRANT SELECT ON stock_snapshots TO storekeep_app');
    }
    // and with the privilege back, the check runs again (nothing was cached as failed)
    const again = await owner.get('/v1/integrity');
    assert.deepEqual(
      again.body.findings.filter((finding: { subject: string }) => finding.subject === 'check_failed'),
      [],
    );
  });

  it('the nightly run opens the operator\'s review item with the same finding (no SQL or database error); the error goes to the worker\'s log', async () => {
    const { logger: workerLogger, lines: workerLogs } = capturingLogger('error');
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), workerMetricsPort: 0 };
    // The nightly run is the owner, whom privileges do not stop: the table is renamed away instead.
    await t.admin.query('ALTER TABLE stock_snapshots RENAME TO stock_snapshots_away');
    const worker = await startWorker({
      databaseUrl: t.url,
      appDatabaseUrl: t.appUrl,
      config,
      logger: workerLogger,
      tasks: [integrityNightly],
      cronItems: [],
      pollIntervalMs: 100,
    });
    try {
      await t.admin.query(`SELECT graphile_worker.add_job('integrity.run', '{}'::json)`);
      const item = await waitFor('the check_failed item in the operator\'s queue', async () => {
        const listed = await t.operator.get('/v1/system/review-items?status=open');
        return listed.body.items.find((row: { subject_type: string; subject_id: string }) => row.subject_type === FAILING_CHECK && row.subject_id === 'check_failed');
      });
      const correlationId = item.detail.detail.correlation_id;
      assert.equal(typeof correlationId, 'string');
      assert.deepEqual(item.detail.detail, { error: CHECK_COULD_NOT_RUN, correlation_id: correlationId });
      assert.equal(item.kind, 'integrity_finding');
      assert.equal(item.severity, 'critical');
      assert.doesNotMatch(JSON.stringify(item), LEAKS);
      // the tenant's own findings were opened in its queue as before
      const tenantItems = (await owner.get('/v1/review-items?status=open&kind=integrity_finding')).body.items;
      assert.ok(tenantItems.some((row: { subject_type: string }) => row.subject_type === 'sale_total_matches_items'));
      assert.doesNotMatch(JSON.stringify(tenantItems), LEAKS);
      const logged = await waitFor('the logged error', async () =>
        workerLogs.find((line) => line.check === FAILING_CHECK && line.correlation_id === correlationId),
      );
      assert.match(String((logged.err as { message?: string }).message), /relation "stock_snapshots" does not exist/);
    } finally {
      await worker.stop();
      await t.admin.query('ALTER TABLE stock_snapshots_away RENAME TO stock_snapshots');
    }
  });

  it('storekeep check prints the same finding on stdout (text and JSON) and the database\'s error on stderr, under one correlation id', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check', ...args], {
          env: { ...process.env, DATABASE_URL: t.url, LOG_LEVEL: 'error' },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk) => (stdout += chunk));
        child.stderr.on('data', (chunk) => (stderr += chunk));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    await t.admin.query('ALTER TABLE stock_snapshots RENAME TO stock_snapshots_away');
    try {
      const json = await run(['--json']);
      assert.equal(json.code, 1, json.stderr);
      const report = JSON.parse(json.stdout);
      const failed = report.findings.filter((finding: { subject: string }) => finding.subject === 'check_failed');
      assert.equal(failed.length, 1, json.stdout);
      assert.equal(failed[0].check, FAILING_CHECK);
      assert.equal(failed[0].tenant_id, '00000000-0000-0000-0000-000000000000');
      const correlationId = failed[0].detail.correlation_id;
      assert.deepEqual(failed[0].detail, { error: CHECK_COULD_NOT_RUN, correlation_id: correlationId });
      assert.doesNotMatch(json.stdout, LEAKS);
      const logged = json.stderr
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((line) => line.check === FAILING_CHECK);
      assert.equal(logged.length, 1, json.stderr);
      assert.equal(logged[0]!.correlation_id, correlationId);
      assert.match(String((logged[0]!.err as { message?: string }).message), /relation "stock_snapshots" does not exist/);

      const text = await run([]);
      assert.equal(text.code, 1, text.stderr);
      assert.match(text.stdout, new RegExp(`^critical\\t${FAILING_CHECK}\\ttenant=0{8}-0{4}-0{4}-0{4}-0{12}\\tsubject=check_failed\\t\\{"error":"${CHECK_COULD_NOT_RUN}","correlation_id":"[^"]+"\\}$`, 'm'));
      assert.doesNotMatch(text.stdout, LEAKS);
      assert.match(text.stderr, /relation \\"stock_snapshots\\" does not exist/);
    } finally {
      await t.admin.query('ALTER TABLE stock_snapshots_away RENAME TO stock_snapshots');
    }
  });
});
