import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { workerRegistry } from '../core/metrics.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';
import { startTestWorker } from '../../test/support/worker.js';
import { integrityNightly } from './nightlyJob.js';

/**
 * From a finding to the review queue, the metrics and the CLI, with two
 * tenants corrupted at once: each finding is filed in its own tenant, once;
 * a finding resolved while the data is still wrong is opened again, once.
 */
describe('integrity findings in the review queue, the metrics and storekeep check --json', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  async function corruptShop(): Promise<{ tenantId: string; owner: ApiClient; storeId: string }> {
    const { tenantId, owner } = await t.newTenant();
    const store = await owner.post('/v1/stores', { code: `S${randomUUID().slice(0, 6)}`, name: 'Main' });
    const sku = await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Nails', unit: 'piece', price: 100 });
    assert.equal((await owner.post(`/v1/stores/${store.body.id}/stock/receipts`, { items: [{ sku_id: sku.body.id, quantity: 10 }] })).status, 201);
    await t.admin.query('UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1', [tenantId]);
    return { tenantId, owner, storeId: store.body.id };
  }

  const items = async (tenantId: string) =>
    (await t.admin.query(`SELECT id, status, subject_type, store_id FROM review_items WHERE tenant_id = $1 AND kind = 'integrity_finding' ORDER BY created_at`, [tenantId])).rows;

  it('files each tenant\'s finding in that tenant once, reopens a resolved one that is still there, counts them, and the CLI reports them as JSON', async () => {
    const a = await corruptShop();
    const b = await corruptShop();
    const worker = await startTestWorker(t, { workerMetricsPort: 0 }, [integrityNightly]);
    const nightlyRun = async () => {
      await t.admin.query(`SELECT graphile_worker.add_job('integrity.run', '{}'::json)`);
      await waitFor('the run', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n === 0);
    };
    try {
      await nightlyRun();
      await nightlyRun();
      for (const shop of [a, b]) {
        const rows = await items(shop.tenantId);
        assert.deepEqual(rows.map((row) => [row.status, row.subject_type, row.store_id]), [['open', 'stock_ledger_matches_balance', shop.storeId]]);
      }
      assert.match(await workerRegistry.getSingleMetricAsString('storekeep_integrity_findings'), /storekeep_integrity_findings\{check="stock_ledger_matches_balance"\} 2\b/);

      // resolved by someone, but the data is still wrong: the next run opens it again, once
      const [item] = await items(a.tenantId);
      const resolved = await a.owner.post(`/v1/review-items/${item.id}/resolve`, { note: 'looked at it' });
      assert.equal(resolved.status, 200);
      await nightlyRun();
      await nightlyRun();
      assert.deepEqual((await items(a.tenantId)).map((row) => row.status), ['resolved', 'open']);
      assert.deepEqual((await items(b.tenantId)).map((row) => row.status), ['open']);
      const scraped = await (await fetch(`${t.baseUrl}/metrics`)).text();
      assert.match(scraped, /storekeep_integrity_open_findings\{check="stock_ledger_matches_balance"\} 2\b/);
    } finally {
      await worker.stop();
    }

    const cli = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check', '--json'], { env: { ...process.env, DATABASE_URL: t.url, LOG_LEVEL: 'silent' } });
      let stdout = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.on('close', (code) => resolve({ code, stdout }));
    });
    assert.equal(cli.code, 1);
    const report = JSON.parse(cli.stdout);
    assert.equal(report.ok, false);
    assert.ok(!Number.isNaN(Date.parse(report.checked_at)));
    assert.deepEqual(
      report.findings.map((finding: { check: string; tenant_id: string; detail: { store_id: string } }) => [finding.check, finding.tenant_id, finding.detail.store_id]).sort(),
      [
        ['stock_ledger_matches_balance', a.tenantId, a.storeId],
        ['stock_ledger_matches_balance', b.tenantId, b.storeId],
      ].sort(),
    );
  });
  it('a run records as created only the items it created; two findings of one subject make one item', async () => {
    const { tenantId, owner } = await t.newTenant();
    const ok = async <T extends { status: number; body: any }>(pending: Promise<T>, status = 201): Promise<T> => {
      const response = await pending;
      assert.equal(response.status, status, JSON.stringify(response.body));
      return response;
    };
    const source = (await ok(owner.post('/v1/stores', { code: 'A', name: 'A' }))).body.id;
    const destination = (await ok(owner.post('/v1/stores', { code: 'B', name: 'B' }))).body.id;
    const skus = [];
    for (const code of ['X', 'Y']) skus.push((await ok(owner.post('/v1/skus', { code: `${code}${randomUUID().slice(0, 6)}`, name: code, unit: 'piece', price: 5 }))).body.id);
    await ok(owner.post(`/v1/stores/${source}/stock/receipts`, { items: skus.map((sku_id) => ({ sku_id, quantity: 10 })) }));
    const transfer = (await ok(owner.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items: skus.map((sku_id) => ({ sku_id, quantity: 2 })) }))).body.id;
    await ok(owner.post(`/v1/transfers/${transfer}/approve`, {}), 200);
    // both lines lose their quantity in transit: two findings, one subject (the transfer)
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(`UPDATE stock_transfer_items SET quantity_in_transit = 0 WHERE tenant_id = $1`, [tenantId]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const worker = await startTestWorker(t, { workerMetricsPort: 0 }, [integrityNightly]);
    const nightlyRun = async () => {
      await t.admin.query(`SELECT graphile_worker.add_job('integrity.run', '{}'::json)`);
      await waitFor('the run', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n === 0);
    };
    try {
      await nightlyRun();
      await nightlyRun();
    } finally {
      await worker.stop();
    }
    const open = await items(tenantId);
    assert.deepEqual(open.map((row) => [row.status, row.subject_type]), [['open', 'transfer_in_transit_consistent']]);
    const runs = (
      await t.admin.query(
        `SELECT o.id, e.effects FROM operations o JOIN events e ON e.tenant_id = o.tenant_id AND e.op_id = o.id AND e.subject_type IS NULL
         WHERE o.tenant_id = $1 AND o.type = 'integrity.review' ORDER BY o.created_at`,
        [tenantId],
      )
    ).rows;
    assert.equal(runs.length, 2);
    const created = (effects: Array<{ table: string; id: string; action: string }>) =>
      effects.filter((effect) => effect.table === 'review_items' && effect.action === 'created').map((effect) => effect.id);
    assert.deepEqual(created(runs[0].effects), [open[0].id]);
    assert.deepEqual(created(runs[1].effects), []);
  });
});
