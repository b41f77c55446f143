import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { planOf } from '../../test/support/plans.js';
import { inTenantTransaction } from '../core/command.js';
import { all } from '../core/db.js';
import { givenSku, givenStore } from '../sales/testkit.js';
import { stockAsOf } from './stockAsOf.js';
import { ledgerDays, SNAPSHOT_STEP_DAYS, snapshotStepBounds } from './takeStockSnapshots.js';

/**
 * Stock as of a moment costs the ledger rows since each pair's latest
 * snapshot, not the pair's whole history — as the service runs it: as the app
 * role, under row-level security. There the ledger's lower bound was written
 * `created_at >= coalesce(snapshot end, '-infinity')`, which PostgreSQL does
 * not take as an index condition under a row-level security policy (it
 * counts COALESCE as a node that could leak rows, so the bound may be checked
 * only after the policy): every ledger row of each pair was read and filtered
 * — a tenant's whole ledger for a store's answer. As the superuser the plan
 * was a range, so only the service was slow.
 */
describe('stock history reads the ledger since the snapshot, not the whole history (as the app role, custom and generic plans)', () => {
  const PAIRS = 4;
  const DAYS = 40;
  const ROWS = 40_000; // 10,000 a pair, 250 a pair and day
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  const DAY = 86_400_000;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'DEEP');
    const skus: string[] = [];
    for (let i = 0; i < PAIRS; i++) skus.push(await givenSku(owner, `DEEP-${i}`, 'piece'));
    const opId = (await t.admin.query(`SELECT op_id FROM skus WHERE tenant_id = $1 LIMIT 1`, [tenantId])).rows[0].op_id;
    // Given: 40 days of history, one unit in at a time (written as a superuser, with past timestamps), ending a day ago
    await t.admin.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) SELECT $1, $2, s, $4::int / $5::int FROM unnest($3::uuid[]) s`, [
      tenantId,
      storeId,
      skus,
      ROWS,
      PAIRS,
    ]);
    await t.admin.query(
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
       SELECT $1, $2, ($3::uuid[])[1 + g % $6::int], $4, 1, 1 + g / $6::int, 'receipt', now() - interval '1 day' * ($7::int + 1) + g * (interval '1 day' * $7::int / $5::int)
       FROM generate_series(0, $5::int - 1) g`,
      [tenantId, storeId, skus, opId, ROWS, PAIRS, DAYS],
    );
    // and the snapshots of every day up to the last one that ended (as the nightly job takes them)
    const taken = await owner.post('/v1/stock/snapshots', {});
    assert.equal(taken.status, 200, JSON.stringify(taken.body));
    assert.ok(taken.body.snapshots_written >= PAIRS * DAYS, JSON.stringify(taken.body));
    await t.admin.query('ANALYZE stock_balances, stock_ledger, stock_snapshots');
  });
  after(() => t.close());

  const fullLedgerSum = async (asOf: string) =>
    (
      await t.admin.query(
        `SELECT sku_id, coalesce(sum(quantity_change) FILTER (WHERE l.created_at <= $3::timestamptz), 0)::int AS quantity
         FROM stock_balances b LEFT JOIN stock_ledger l USING (tenant_id, store_id, sku_id)
         WHERE b.tenant_id = $1 AND b.store_id = $2 GROUP BY sku_id ORDER BY sku_id`,
        [tenantId, storeId, asOf],
      )
    ).rows as Array<{ sku_id: string; quantity: number }>;

  for (const plan of ['auto', 'generic'] as const) {
    it(`${plan} plan: as of now, of a moment 20 days ago and of one before the history, each pair's ledger is an index range from its snapshot's end (a day's rows or less, not 10,000)`, async () => {
      for (const asOf of [new Date().toISOString(), new Date(Date.now() - 20 * DAY + 6 * 3_600_000).toISOString(), new Date(Date.now() - (DAYS + 5) * DAY).toISOString()]) {
        const nodes = await planOf(t.db, tenantId, (tx) => stockAsOf(tx, tenantId, storeId, asOf, { limit: 51 }), plan);
        const ledger = nodes.filter((node) => node['Relation Name'] === 'stock_ledger');
        const label = `${plan} as of ${asOf}: ${JSON.stringify(ledger.map((node) => [node['Node Type'], node['Index Name'], node['Index Cond'], node['Actual Rows'], node['Rows Removed by Filter'], node['Actual Loops']]))}`;
        assert.ok(ledger.length > 0, label);
        for (const node of ledger) {
          assert.match(node['Node Type'], /^Index (Only )?Scan$/, label);
          assert.equal(node['Index Name'], 'stock_ledger_history_idx', label);
          assert.match(node['Index Cond'] ?? '', /created_at >= /, label);
        }
        const read = ledger.reduce((sum, node) => sum + ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1), 0);
        assert.ok(read <= PAIRS * (ROWS / PAIRS / DAYS + 10), `${label}: read ${read} ledger rows`);
        const answer = await inTenantTransaction(t.db, tenantId, (tx) => stockAsOf(tx, tenantId, storeId, asOf));
        assert.deepEqual(
          answer.map(({ sku_id, quantity }) => ({ sku_id, quantity: Number(quantity) })),
          await fullLedgerSum(asOf),
          `as of ${asOf}`,
        );
      }
    });
  }

  /**
   * Each step of a snapshot run starts on the first day with a ledger row
   * after the tenant's latest snapshot (snapshotStepBounds): one index probe
   * per pair, from that day on — not a read of the ledger since, which after
   * a long gap is the gap.
   */
  for (const plan of ['auto', 'generic'] as const) {
    it(`${plan} plan: a snapshot step finds its first day with one ledger row per pair at most, by index from the latest snapshot's end`, async () => {
      const nodes = await planOf(t.db, tenantId, (tx) => all(tx, snapshotStepBounds(tenantId, undefined, SNAPSHOT_STEP_DAYS)), plan);
      const ledger = nodes.filter((node) => node['Relation Name'] === 'stock_ledger');
      const label = `${plan}: ${JSON.stringify(ledger.map((node) => [node['Node Type'], node['Index Name'], node['Index Cond'], node['Actual Rows'], node['Rows Removed by Filter'], node['Actual Loops']]))}`;
      assert.equal(ledger.length, 1, label);
      assert.match(ledger[0]!['Node Type'], /^Index (Only )?Scan$/, label);
      assert.equal(ledger[0]!['Index Name'], 'stock_ledger_history_idx', label);
      assert.match(ledger[0]!['Index Cond'] ?? '', /created_at >= /, label);
      const read = ((ledger[0]!['Actual Rows'] ?? 0) + (ledger[0]!['Rows Removed by Filter'] ?? 0)) * (ledger[0]!['Actual Loops'] ?? 1);
      assert.ok(read <= PAIRS, `${label}: read ${read} ledger rows`);
    });
  }

  /**
   * A snapshot run sums the ledger from the day after the tenant's latest
   * snapshot (ledgerDays). Its lower bound was `coalesce(<from day>,
   * '-infinity')`: folded to a constant in a plan made with the values, but a
   * filter in a generic plan (a prepared statement reused, a pooler, a server
   * set to plan_cache_mode = force_generic_plan), where the nightly run read
   * every tenant's whole ledger (a sequential scan) to sum one day.
   */
  for (const plan of ['auto', 'generic'] as const) {
    it(`${plan} plan: a snapshot run reads only the ledger rows of the days it sums (one day: its 1,000 rows, not the 40,000), by index`, async () => {
      const day = new Date(Date.now() - 3 * DAY).toISOString().slice(0, 10);
      for (const from of [day, null]) {
        const nodes = await planOf(t.db, tenantId, (tx) => all(tx, sql`SELECT * FROM (${ledgerDays(tenantId, from, day)}) d`), plan);
        const ledger = nodes.filter((node) => node['Relation Name'] === 'stock_ledger');
        const label = `${plan} from ${from}: ${JSON.stringify(nodes.map((node) => [node['Node Type'], node['Relation Name'], node['Index Name'], node['Index Cond'], node['Actual Rows'], node['Rows Removed by Filter'], node['Actual Loops']]))}`;
        assert.equal(ledger.length, 1, label);
        if (from === null) continue; // from the first row: the history up to the day is what it sums
        const read = ((ledger[0]!['Actual Rows'] ?? 0) + (ledger[0]!['Rows Removed by Filter'] ?? 0)) * (ledger[0]!['Actual Loops'] ?? 1);
        assert.match(ledger[0]!['Node Type'], /^(Index (Only )?Scan|Bitmap Heap Scan)$/, label);
        assert.ok(read <= ROWS / DAYS + 10, `${label}: read ${read} ledger rows to sum one day`);
        const sums = await inTenantTransaction(t.db, tenantId, (tx) => all(tx, sql<{ change: number }>`SELECT sum(change)::int AS change FROM (${ledgerDays(tenantId, from, day)}) d`));
        assert.ok(Math.abs(sums[0]!.change - ROWS / DAYS) <= PAIRS, `${label}: summed ${sums[0]!.change}`);
      }
    });
  }
});
