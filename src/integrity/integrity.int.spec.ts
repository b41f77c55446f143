import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { createLogger } from '../core/logger.js';
import { workerRegistry } from '../core/metrics.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';
import { startWorker } from '../jobs/worker.js';
import type { IntegrityCheck } from './check.js';
import { integrityNightly } from './nightlyJob.js';
import { stockSnapshotsNightly } from '../inventory/snapshotJob.js';
import { allChecks } from './registry.js';
import { CHECK_COULD_NOT_RUN, runChecksAsOwner, runChecksForTenant } from './runChecks.js';
import { testCheckLog } from '../../test/support/integrity.js';

const settings = { ordersStuckSeconds: 600 };

interface Shop {
  tenantId: string;
  owner: ApiClient;
  storeId: string;
  skuId: string;
}

describe('integrity checker', () => {
  let t: TestApp;

  /** A tenant with one store, one SKU and 10 units received: consistent by construction. */
  async function newShop(): Promise<Shop> {
    const { tenantId, owner } = await t.newTenant();
    const store = await owner.post('/v1/stores', { code: `S${randomUUID().slice(0, 6)}`, name: 'Main' }, { idempotencyKey: randomUUID() });
    const sku = await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Nails', unit: 'piece', price: 100 });
    assert.equal(store.status, 201);
    assert.equal(sku.status, 201);
    const receipt = await owner.post(`/v1/stores/${store.body.id}/stock/receipts`, { items: [{ sku_id: sku.body.id, quantity: 10 }] });
    assert.equal(receipt.status, 201);
    return { tenantId, owner, storeId: store.body.id, skuId: sku.body.id };
  }

  /** Names of the checks reporting something for this tenant, via the API (app role, RLS) and as the owner. */
  async function reportedChecks(shop: Shop): Promise<{ api: string[]; owner: string[] }> {
    const response = await shop.owner.get('/v1/integrity');
    assert.equal(response.status, 200);
    const ownerRun = await runChecksAsOwner(t.admin, allChecks, settings, testCheckLog);
    return {
      api: [...new Set<string>(response.body.findings.map((finding: { check: string }) => finding.check))].sort(),
      owner: [...new Set(ownerRun.findings.filter((finding) => finding.tenant_id === shop.tenantId).map((finding) => finding.check))].sort(),
    };
  }

  before(async () => {
    t = await startTestApp();
  });
  after(async () => {
    await t.close();
  });

  it('finds nothing on consistent data, in the API shape', async () => {
    const shop = await newShop();
    const response = await shop.owner.get('/v1/integrity');
    assert.equal(response.status, 200);
    assert.deepEqual(Object.keys(response.body).sort(), ['checked_at', 'findings', 'ok']);
    assert.equal(response.body.ok, true);
    assert.deepEqual(response.body.findings, []);
    assert.ok(!Number.isNaN(Date.parse(response.body.checked_at)));
    const ownerRun = await runChecksAsOwner(t.admin, allChecks, settings, testCheckLog);
    assert.deepEqual(ownerRun.findings, []);
  });

  it('stock_ledger_matches_balance: a balance changed without its ledger row', async () => {
    const shop = await newShop();
    await t.admin.query('UPDATE stock_balances SET quantity = quantity + 5 WHERE tenant_id = $1', [shop.tenantId]);
    const reported = await reportedChecks(shop);
    assert.deepEqual(reported, { api: ['stock_ledger_matches_balance'], owner: ['stock_ledger_matches_balance'] });
    const response = await shop.owner.get('/v1/integrity');
    assert.equal(response.body.ok, false);
    assert.deepEqual(response.body.findings, [
      {
        check: 'stock_ledger_matches_balance',
        severity: 'critical',
        subject: `${shop.storeId}/${shop.skuId}`,
        detail: { store_id: shop.storeId, sku_id: shop.skuId, balance: 15, ledger_sum: 10 },
      },
    ]);
  });

  it('stock_ledger_matches_balance: ledger rows left without their balance row (an orphan)', async () => {
    const shop = await newShop();
    const client = await t.admin.connect();
    try {
      // Only a superuser with foreign keys switched off can do this.
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query('DELETE FROM stock_balances WHERE tenant_id = $1', [shop.tenantId]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.deepEqual(await reportedChecks(shop), { api: ['stock_ledger_matches_balance'], owner: ['stock_ledger_matches_balance'] });
    const response = await shop.owner.get('/v1/integrity');
    assert.deepEqual(response.body.findings[0].detail, { store_id: shop.storeId, sku_id: shop.skuId, balance: null, ledger_sum: 10 });
  });

  it('stock_snapshot_matches_ledger: a daily snapshot that is not the ledger at the end of its day', async () => {
    const shop = await newShop();
    // The receipt happened two days ago, and the days since have been snapshotted: consistent.
    const client = await t.admin.connect();
    const asSuperuserWithoutTriggers = async (text: string) => {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(text, [shop.tenantId]);
      await client.query('COMMIT');
    };
    try {
      await asSuperuserWithoutTriggers(`UPDATE stock_ledger SET created_at = created_at - interval '2 days' WHERE tenant_id = $1`);
      const taken = await shop.owner.post('/v1/stock/snapshots', {});
      assert.equal(taken.status, 200);
      assert.equal(taken.body.snapshots_written, 1);
      assert.deepEqual(await reportedChecks(shop), { api: [], owner: [] });
      await asSuperuserWithoutTriggers(`UPDATE stock_snapshots SET quantity = quantity + 1 WHERE tenant_id = $1`);
    } finally {
      client.release();
    }
    assert.deepEqual(await reportedChecks(shop), { api: ['stock_snapshot_matches_ledger'], owner: ['stock_snapshot_matches_ledger'] });
    const response = await shop.owner.get('/v1/integrity');
    assert.equal(response.body.findings[0].detail.snapshot, 11);
    assert.equal(response.body.findings[0].detail.ledger, 10);
  });

  it('stock_ledger_running_totals: a ledger row whose quantity_after is not the running sum of its changes', async () => {
    const shop = await newShop();
    // A second row, so the broken one is not the first.
    assert.equal((await shop.owner.post(`/v1/stores/${shop.storeId}/stock/receipts`, { items: [{ sku_id: shop.skuId, quantity: 5 }] })).status, 201);
    const client = await t.admin.connect();
    try {
      // The ledger is append-only: only a superuser with triggers off can do this.
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(
        `UPDATE stock_ledger SET quantity_after = quantity_after + 3
         WHERE tenant_id = $1 AND id = (SELECT max(id) FROM stock_ledger WHERE tenant_id = $1)`,
        [shop.tenantId],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.deepEqual(await reportedChecks(shop), { api: ['stock_ledger_running_totals'], owner: ['stock_ledger_running_totals'] });
    const response = await shop.owner.get('/v1/integrity');
    assert.equal(response.body.findings.length, 1);
    assert.deepEqual(
      { ...response.body.findings[0].detail, ledger_id: undefined },
      { store_id: shop.storeId, sku_id: shop.skuId, ledger_id: undefined, quantity_after: 18, running_sum: 15 },
    );
  });

  it('stock_not_negative: a negative balance (its ledger agreeing), once the CHECK constraints are gone', async () => {
    const shop = await newShop();
    // The database refuses this even to a superuser while the constraints exist.
    await t.admin.query(`ALTER TABLE stock_balances DROP CONSTRAINT stock_balances_quantity_nonnegative`);
    await t.admin.query(`ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_quantity_after_check`);
    const opId = randomUUID();
    await t.admin.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'stock.adjust', 'test', 'c')`, [shop.tenantId, opId]);
    await t.admin.query(`INSERT INTO events (tenant_id, op_id, type, actor, correlation_id) VALUES ($1, $2, 'stock.adjust', 'test', 'c')`, [shop.tenantId, opId]);
    await t.admin.query(
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind) VALUES ($1, $2, $3, $4, -15, -5, 'adjustment')`,
      [shop.tenantId, shop.storeId, shop.skuId, opId],
    );
    await t.admin.query('UPDATE stock_balances SET quantity = -5 WHERE tenant_id = $1', [shop.tenantId]);
    assert.deepEqual(await reportedChecks(shop), { api: ['stock_not_negative'], owner: ['stock_not_negative'] });
  });

  it('idempotency_record_has_operation: a stored response whose operation is gone', async () => {
    const shop = await newShop();
    const client = await t.admin.connect();
    try {
      // Only a superuser with foreign keys switched off can do this.
      await client.query(`SET session_replication_role = replica`);
      await client.query(
        `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, op_id, response_status, response_body, expires_at)
         VALUES ($1, 'orphan-key', 'x', $2, 201, '{}', now() + interval '1 day')`,
        [shop.tenantId, randomUUID()],
      );
      await client.query(`SET session_replication_role = DEFAULT`);
    } finally {
      client.release();
    }
    assert.deepEqual(await reportedChecks(shop), { api: ['idempotency_record_has_operation'], owner: ['idempotency_record_has_operation'] });
  });

  it('operation_has_audit_event: an operation written without its audit event', async () => {
    const shop = await newShop();
    await t.admin.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'stock.receive', 'ghost', 'c')`, [
      shop.tenantId,
      randomUUID(),
    ]);
    assert.deepEqual(await reportedChecks(shop), { api: ['operation_has_audit_event'], owner: ['operation_has_audit_event'] });
  });

  it('reports a check that cannot run instead of hiding it', async () => {
    const shop = await newShop();
    const broken: IntegrityCheck = { name: 'broken_check', severity: 'warning', description: 'x', sql: 'SELECT * FROM no_such_table WHERE $1::uuid IS NULL' };
    const logged: Array<{ fields: Record<string, unknown>; message: string }> = [];
    const logger = { error: (fields: object, message: string) => void logged.push({ fields: fields as Record<string, unknown>, message }) };
    const run = await runChecksForTenant(t.db, shop.tenantId, [broken, ...allChecks], settings, { logger, correlationId: 'corr-broken' });
    assert.deepEqual(run.findings, [
      { check: 'broken_check', severity: 'critical', subject: 'check_failed', detail: { error: CHECK_COULD_NOT_RUN, correlation_id: 'corr-broken' }, tenant_id: shop.tenantId },
    ]);
    // what the database said is logged, not reported
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.fields.check, 'broken_check');
    assert.match(String((logged[0]!.fields.err as Error).message), /relation "no_such_table" does not exist/);
  });

  it('nightly run: one review item per finding, not duplicated by the next run, counted on /metrics', async () => {
    const shop = await newShop();
    await t.admin.query('UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1', [shop.tenantId]);
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), workerMetricsPort: 0 };
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger: createLogger('silent'), tasks: [integrityNightly], cronItems: [], pollIntervalMs: 100 });
    try {
      const openItems = async () =>
        (await t.admin.query(`SELECT * FROM review_items WHERE tenant_id = $1 AND kind = 'integrity_finding'`, [shop.tenantId])).rows;
      await t.admin.query(`SELECT graphile_worker.add_job('integrity.run', '{}'::json)`);
      const [item] = await waitFor('a review item', async () => {
        const rows = await openItems();
        return rows.length > 0 && rows;
      });
      assert.equal(item.subject_type, 'stock_ledger_matches_balance');
      assert.equal(item.store_id, shop.storeId);
      assert.equal(item.detail.detail.ledger_sum, 10);
      await t.admin.query(`SELECT graphile_worker.add_job('integrity.run', '{}'::json)`);
      await waitFor('the second run', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`)).rows[0].n === 0);
      assert.equal((await openItems()).length, 1);
      const metrics = await workerRegistry.getSingleMetricAsString('storekeep_integrity_findings');
      assert.match(metrics, /storekeep_integrity_findings\{check="stock_ledger_matches_balance"\} [1-9]/);
      // the API's /metrics shows the open findings from the review queue
      const scraped = await (await fetch(`${t.baseUrl}/metrics`)).text();
      const lines = scraped.split('\n').filter((line) => line.startsWith('storekeep_integrity_open_findings{'));
      // (the run covered every tenant of this file's database, so earlier tests' corruptions are there too)
      const open = await t.admin.query<{ check: string; n: number }>(
        `SELECT subject_type AS check, count(*)::int AS n FROM review_items WHERE kind = 'integrity_finding' AND status = 'open' GROUP BY 1 ORDER BY 1`,
      );
      assert.ok(open.rows.some((row) => row.check === 'stock_ledger_matches_balance'));
      assert.deepEqual(lines.sort(), open.rows.map((row) => `storekeep_integrity_open_findings{check="${row.check}"} ${row.n}`).sort());
      // and the stock itself was not touched: reviewed, never auto-fixed
      const balance = await t.admin.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1`, [shop.tenantId]);
      assert.equal(balance.rows[0].quantity, 11);
    } finally {
      await worker.stop();
    }
  });

  it('the nightly stock snapshot job runs for every tenant holding stock', async () => {
    const shop = await newShop();
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), workerMetricsPort: 0 };
    const worker = await startWorker({ databaseUrl: t.url, appDatabaseUrl: t.appUrl, config, logger: createLogger('silent'), tasks: [stockSnapshotsNightly], cronItems: [], pollIntervalMs: 100 });
    try {
      await t.admin.query(`SELECT graphile_worker.add_job('stock.snapshots', '{}'::json)`);
      await waitFor('the snapshot operation', async () => {
        const { rows } = await t.admin.query(`SELECT 1 FROM operations WHERE tenant_id = $1 AND type = 'stock.snapshot'`, [shop.tenantId]);
        return rows.length === 1;
      });
    } finally {
      await worker.stop();
    }
  });

  it('storekeep check prints the findings and exits non-zero', async () => {
    const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check'], {
        env: { ...process.env, DATABASE_URL: t.url, LOG_LEVEL: 'silent' },
      });
      let stdout = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.on('close', (code) => resolve({ code, stdout }));
    });
    // (earlier tests of this file left corrupted rows behind)
    assert.equal(result.code, 1);
    assert.match(result.stdout, /critical\tstock_ledger_matches_balance\ttenant=/);
    assert.match(result.stdout, /finding\(s\) from \d+ checks/);
  });
});

describe('review items API', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => {
    await t.close();
  });

  async function seedItem(tenantId: string, storeId: string | null = null): Promise<string> {
    const opId = randomUUID();
    const id = randomUUID();
    await t.admin.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'test.seed', 'test', 'c')`, [tenantId, opId]);
    await t.admin.query(`INSERT INTO events (tenant_id, op_id, type, actor, correlation_id) VALUES ($1, $2, 'test.seed', 'test', 'c')`, [tenantId, opId]);
    await t.admin.query(
      `INSERT INTO review_items (tenant_id, id, kind, detail, op_id, store_id) VALUES ($1, $2, 'job_failed', '{"error":"boom"}', $3, $4)`,
      [tenantId, id, opId, storeId],
    );
    return id;
  }

  it('lists, filters by status, and resolves with a note exactly once', async () => {
    const { tenantId, owner } = await t.newTenant();
    const first = await seedItem(tenantId);
    const second = await seedItem(tenantId);

    const open = await owner.get('/v1/review-items?status=open');
    assert.equal(open.status, 200);
    assert.deepEqual(open.body.items.map((item: { id: string }) => item.id).sort(), [first, second].sort());

    const resolved = await owner.post(`/v1/review-items/${first}/resolve`, { note: 'provider order checked by hand' }, { idempotencyKey: 'resolve-1' });
    assert.equal(resolved.status, 200);
    assert.equal(resolved.body.status, 'resolved');
    assert.equal(resolved.body.resolution_note, 'provider order checked by hand');

    const row = (await t.admin.query(`SELECT status, resolved_by_op, resolution_note FROM review_items WHERE id = $1`, [first])).rows[0];
    assert.equal(row.status, 'resolved');
    const op = await t.admin.query(`SELECT type FROM operations WHERE id = $1`, [row.resolved_by_op]);
    assert.equal(op.rows[0].type, 'review_item.resolve');

    // same key: replay; new key: the item is no longer open
    const replay = await owner.post(`/v1/review-items/${first}/resolve`, { note: 'provider order checked by hand' }, { idempotencyKey: 'resolve-1' });
    assert.equal(replay.status, 200);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const again = await owner.post(`/v1/review-items/${first}/resolve`, { note: 'again' });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'invalid_transition');

    const stillOpen = await owner.get('/v1/review-items?status=open');
    assert.deepEqual(stillOpen.body.items.map((item: { id: string }) => item.id), [second]);
    const done = await owner.get('/v1/review-items?status=resolved');
    assert.deepEqual(done.body.items.map((item: { id: string }) => item.id), [first]);
  });

  it('pages with a cursor', async () => {
    const { tenantId, owner } = await t.newTenant();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await seedItem(tenantId));
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: Array<{ id: string }>; next_cursor: string | null } } = await owner.get(
        `/v1/review-items?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(page.status, 200);
      seen.push(...page.body.items.map((item) => item.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    assert.deepEqual(seen.sort(), ids.sort());
  });

  it('the operator sees and resolves the system tenant\'s items; tenants cannot', async () => {
    const { owner } = await t.newTenant();
    const item = await seedItem('00000000-0000-0000-0000-000000000000');
    const listed = await t.operator.get('/v1/system/review-items?status=open');
    assert.equal(listed.status, 200);
    assert.ok(listed.body.items.some((row: { id: string }) => row.id === item));
    assert.equal((await owner.get('/v1/system/review-items')).status, 403);
    assert.equal((await owner.post(`/v1/system/review-items/${item}/resolve`, { note: 'x' })).status, 403);
    const resolved = await t.operator.post(`/v1/system/review-items/${item}/resolve`, { note: 'nightly run re-ran by hand' });
    assert.equal(resolved.status, 200);
    assert.equal(resolved.body.status, 'resolved');
    const row = (await t.admin.query(`SELECT status, resolved_by_op FROM review_items WHERE id = $1`, [item])).rows[0];
    assert.equal(row.status, 'resolved');
    const op = await t.admin.query(`SELECT actor FROM operations WHERE tenant_id = '00000000-0000-0000-0000-000000000000' AND id = $1`, [row.resolved_by_op]);
    assert.equal(op.rows[0].actor, 'operator');
  });

  it('hides other tenants\' items (404) and refuses roles without review.resolve (403), changing nothing', async () => {
    const a = await t.newTenant();
    const b = await t.newTenant();
    const item = await seedItem(a.tenantId);
    const foreign = await b.owner.post(`/v1/review-items/${item}/resolve`, { note: 'not mine' });
    assert.equal(foreign.status, 404);
    assert.equal((await b.owner.get(`/v1/review-items/${item}`)).status, 404);

    const cashierToken = await a.owner.post('/v1/tokens', { name: 'till', role: 'cashier' });
    assert.equal(cashierToken.status, 201);
    const cashier = t.client(cashierToken.body.token);
    const refused = await cashier.post(`/v1/review-items/${item}/resolve`, { note: 'no' });
    assert.equal(refused.status, 403);
    const bad = await a.owner.post(`/v1/review-items/${item}/resolve`, { note: '' });
    assert.equal(bad.status, 400);
    const row = (await t.admin.query(`SELECT status FROM review_items WHERE id = $1`, [item])).rows[0];
    assert.equal(row.status, 'open');
  });
});
