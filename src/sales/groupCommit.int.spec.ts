import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { fingerprintRequest, type CommandInput } from '../core/command.js';
import { saleCommand } from './createSale.js';
import { GroupCommitter } from './groupCommit.js';
import type { SaleInput } from './sale.table.js';
import { givenSku, givenStock, givenStore } from './testkit.js';

describe('group commit: many sales, one transaction, each its own outcome', () => {
  let t: TestApp;
  let tenantId: string;
  let storeId: string;
  let skuId: string;
  let principal: CommandInput['principal'];

  before(async () => {
    t = await startTestApp();
    const tenant = await t.newTenant();
    tenantId = tenant.tenantId;
    storeId = await givenStore(tenant.owner, 'GC');
    skuId = await givenSku(tenant.owner, 'GC-1', 'piece', 10);
    await givenStock(tenant.owner, storeId, [{ sku_id: skuId, quantity: 1000 }]);
    const tokenId = (await t.admin.query('SELECT id FROM api_tokens WHERE tenant_id = $1', [tenantId])).rows[0].id;
    principal = { kind: 'token', tokenId, tenantId, name: 'test', role: 'owner', storeIds: null };
    // A deferred unique constraint: a violation only shows at COMMIT.
    await t.admin.query(`CREATE TABLE commit_guard (tenant_id uuid NOT NULL, value int NOT NULL, CONSTRAINT commit_guard_unique UNIQUE (value) DEFERRABLE INITIALLY DEFERRED)`);
    await t.admin.query(`GRANT SELECT, INSERT ON commit_guard TO storekeep_app`);
  });
  after(() => t.close());

  const body = (quantity = 1): SaleInput => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 10 }] });
  const inputOf = (sale: SaleInput, key: string | undefined = randomUUID()): CommandInput => ({
    tenantId,
    principal,
    correlationId: randomUUID(),
    idempotencyKey: key,
    fingerprint: fingerprintRequest('POST', '/v1/sales', sale),
    payload: sale,
  });
  const spec = { type: 'sale.create', storeId: '' };
  const state = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM sales WHERE tenant_id = $1)::int AS sales,
                (SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'sale.create')::int AS operations,
                (SELECT quantity::int FROM stock_balances WHERE tenant_id = $1 AND sku_id = $2) AS stock,
                (SELECT last_number::int FROM store_receipt_counters WHERE tenant_id = $1) AS counter`,
        [tenantId, skuId],
      )
    ).rows[0] as { sales: number; operations: number; stock: number; counter: number | null };

  it('batches concurrent sales; a refused one is rolled back alone and takes no number', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const sales = [body(1), body(1), body(10_000), body(2), body(1)];
    const outcomes = await Promise.all(
      sales.map((sale) =>
        committer.run(storeId, inputOf(sale), { ...spec, storeId }, saleCommand(sale, 'online')).then(
          (outcome) => outcome.status,
          (error: { code?: string }) => error.code,
        ),
      ),
    );
    assert.deepEqual(outcomes, [201, 201, 'insufficient_stock', 201, 201]);
    const after = await state();
    assert.equal(after.sales, before.sales + 4);
    assert.equal(after.stock, before.stock - 5);
    assert.equal(after.counter, (before.counter ?? 0) + 4);
    const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows.map((r) => r.n);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
    // The first sale found the lane idle and ran alone; the other four queued
    // behind it and committed together (one transaction: one now()).
    const batches = await t.admin.query(`SELECT count(DISTINCT created_at)::int AS n FROM (SELECT created_at FROM sales WHERE tenant_id = $1 ORDER BY receipt_number DESC LIMIT 4) s`, [tenantId]);
    assert.equal(batches.rows[0].n, 2);
  });

  it('the same idempotency key twice at once: never in one batch; the second replays the first', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const sale = body(3);
    const key = randomUUID();
    const [first, second] = await Promise.all([
      committer.run(storeId, inputOf(sale, key), { ...spec, storeId }, saleCommand(sale, 'online')),
      committer.run(storeId, inputOf(sale, key), { ...spec, storeId }, saleCommand(sale, 'online')),
    ]);
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    assert.deepEqual([first.replayed, second.replayed], [false, true]);
    assert.equal((second.body as { id: string }).id, (first.body as { id: string }).id);
    const after = await state();
    assert.equal(after.sales, before.sales + 1);
    assert.equal(after.stock, before.stock - 3);
  });

  it('an unexpected error in one command fails that caller only', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const results = await Promise.allSettled([
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, async (cmd) => {
        await saleCommand(body(), 'online')(cmd);
        throw new Error('boom after the sale was written');
      }),
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /boom/);
    const after = await state();
    assert.equal(after.sales, before.sales + 2);
    assert.equal(after.stock, before.stock - 2);
    assert.equal(after.counter, (before.counter ?? 0) + 2);
  });

  it('a deadlock re-runs the whole batch: every sale once, nothing from the failed attempt', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    let thrown = false;
    const outcomes = await Promise.all([
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, async (cmd) => {
        const result = await saleCommand(body(), 'online')(cmd);
        if (!thrown) {
          thrown = true;
          throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
        }
        return result;
      }),
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
    ]);
    assert.equal(thrown, true);
    assert.deepEqual(outcomes.map((o) => [o.status, o.replayed]), [[201, false], [201, false], [201, false]]);
    const after = await state();
    assert.equal(after.sales, before.sales + 3);
    assert.equal(after.operations, before.operations + 3);
    assert.equal(after.stock, before.stock - 3);
    assert.equal(after.counter, (before.counter ?? 0) + 3);
  });

  it('a batch whose COMMIT fails rejects every caller and leaves nothing (numbers included)', async () => {
    const committer = new GroupCommitter(t.db);
    // Fill the lane so the next three run as one batch.
    const blocker = committer.run(storeId, inputOf(body()), { ...spec, storeId }, async (cmd) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return saleCommand(body(), 'online')(cmd);
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = await state();
    const guarded = (value: number) => async (cmd: Parameters<ReturnType<typeof saleCommand>>[0]) => {
      const result = await saleCommand(body(), 'online')(cmd);
      await sql`INSERT INTO commit_guard (tenant_id, value) VALUES (${tenantId}, ${value})`.execute(cmd.tx);
      return result;
    };
    const batch = await Promise.allSettled([
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, guarded(1)),
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
      committer.run(storeId, inputOf(body()), { ...spec, storeId }, guarded(1)),
    ]);
    assert.equal((await blocker).status, 201);
    assert.deepEqual(batch.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
    const after = await state();
    assert.equal(after.sales, before.sales + 1, 'only the blocker (which committed before) is there');
    assert.equal(after.stock, before.stock - 1);
    assert.equal(after.counter, (before.counter ?? 0) + 1);
    const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows.map((r) => r.n);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
  });
});
