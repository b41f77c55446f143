/** daily_sales_rollup_matches_sales: figures that no longer match their sales, and only those. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { runCommand } from '../core/command.js';
import { allChecks } from '../integrity/registry.js';
import { runChecksAsOwner } from '../integrity/runChecks.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { rollupDailySales } from './rollupDailySales.js';

describe('integrity: daily sales figures against the sales', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  interface Shop {
    tenantId: string;
    owner: ApiClient;
    storeId: string;
    skuId: string;
    sales: Array<{ id: string; total: number }>;
  }

  const today = () => new Date().toISOString().slice(0, 10);

  /** A store with three sales today, one voided, and today's figures computed: consistent. */
  async function newShop(): Promise<Shop> {
    const { tenantId, owner } = await t.newTenant();
    const storeId = await givenStore(owner, `R${randomUUID().slice(0, 6)}`);
    const skuId = await givenSku(owner, `K${randomUUID().slice(0, 6)}`, 'piece', 250);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 100 }]);
    const sales = [];
    for (const quantity of [1, 2, 3]) {
      const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 250 }] }, { idempotencyKey: randomUUID() });
      assert.equal(sale.status, 201, JSON.stringify(sale.body));
      sales.push(sale.body);
    }
    assert.equal((await owner.post(`/v1/sales/${sales[1].id}/void`, { reason: 'test' }, { idempotencyKey: randomUUID() })).status, 200);
    await rollup(tenantId);
    return { tenantId, owner, storeId, skuId, sales };
  }

  async function rollup(tenantId: string): Promise<void> {
    const input = {
      tenantId,
      principal: { kind: 'operator' as const, name: 'test' },
      correlationId: `rollup-${randomUUID()}`,
      fingerprint: 'rollup',
    };
    const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, today()) }));
    assert.equal(outcome.status, 200);
  }

  /** Time passes: the figures were computed well after the day's last change (beyond the settle margin). */
  async function later(shop: Shop): Promise<void> {
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = computed_at + interval '10 minutes' WHERE tenant_id = $1`, [shop.tenantId]);
  }

  async function asSuperuser(statement: string, params: unknown[]): Promise<void> {
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(statement, params);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }

  async function reported(shop: Shop): Promise<string[]> {
    const run = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 600 });
    return [...new Set(run.findings.filter((finding) => finding.tenant_id === shop.tenantId).map((finding) => finding.check))].sort();
  }

  it('figures computed from the sales match them: nothing reported', async () => {
    const shop = await newShop();
    const figures = (await t.admin.query(`SELECT sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [shop.tenantId])).rows;
    assert.deepEqual(figures, [{ sales_count: 3, voided_count: 1, revenue: 250 * 4 }]);
    assert.deepEqual(await reported(shop), []);
    await later(shop);
    assert.deepEqual(await reported(shop), []);
  });

  it('daily_sales_rollup_matches_sales: revenue changed after the figures were computed', async () => {
    const shop = await newShop();
    await later(shop);
    await asSuperuser(`UPDATE daily_sales_rollups SET revenue = revenue + 1 WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
    const run = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 600 });
    const [finding] = run.findings.filter((f) => f.tenant_id === shop.tenantId);
    assert.equal(finding?.subject, `${shop.storeId}/${today()}`);
    assert.deepEqual((finding?.detail as { sales: unknown }).sales, { sales_count: 3, voided_count: 1, revenue: 1000 });
  });

  it('daily_sales_rollup_matches_sales: a sale counted that is not there (the count off by one)', async () => {
    const shop = await newShop();
    await later(shop);
    await asSuperuser(`UPDATE daily_sales_rollups SET sales_count = sales_count + 1 WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
  });

  it('a sale or void since the figures were computed is not a finding (the nightly run recomputes that day); recomputed, they match again', async () => {
    const shop = await newShop();
    await later(shop);
    // A sale and a void after the figures (they are stale, not wrong)
    const sale = await shop.owner.post('/v1/sales', { store_id: shop.storeId, payment_method: 'cash', items: [{ sku_id: shop.skuId, quantity: 5, unit_price: 250 }] }, { idempotencyKey: randomUUID() });
    assert.equal(sale.status, 201);
    assert.equal((await shop.owner.post(`/v1/sales/${shop.sales[0]!.id}/void`, { reason: 'later' }, { idempotencyKey: randomUUID() })).status, 200);
    await asSuperuser(`UPDATE daily_sales_rollups SET computed_at = now() - interval '1 minute' WHERE tenant_id = $1`, [shop.tenantId]);
    assert.deepEqual(await reported(shop), []);
    // Recomputed: they match, and time passing changes nothing
    await rollup(shop.tenantId);
    await later(shop);
    assert.deepEqual(await reported(shop), []);
    const figures = (await t.admin.query(`SELECT sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [shop.tenantId])).rows;
    assert.deepEqual(figures, [{ sales_count: 4, voided_count: 2, revenue: 250 * (3 + 5) }]);
  });

  it('figures of a store-day with no sale at all must be zeros', async () => {
    const shop = await newShop();
    await asSuperuser(
      `INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op, computed_at)
       SELECT tenant_id, gen_random_uuid(), store_id, business_date - 1, 1, 0, 250, op_id, computed_by_op, computed_at FROM daily_sales_rollups WHERE tenant_id = $1`,
      [shop.tenantId],
    );
    assert.deepEqual(await reported(shop), ['daily_sales_rollup_matches_sales']);
  });
});
