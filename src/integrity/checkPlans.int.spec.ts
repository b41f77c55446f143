import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { allChecks } from './registry.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** Every scan of `relation` in a plan. */
function scansOf(node: PlanNode, relation: string): PlanNode[] {
  const own = node['Relation Name'] === relation ? [node] : [];
  return [...own, ...(node.Plans ?? []).flatMap((child) => scansOf(child, relation))];
}

/**
 * What a check reads, not only what it finds: `GET /v1/integrity` runs every
 * check for one tenant, so a check that needs a few rows of a big table must
 * reach them through an index instead of reading the tenant's (or every
 * tenant's) whole table.
 */
describe('integrity checks read what they need', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('the consignment checks, the check of transfer rows and the check of stock counts read only those rows of the stock ledger, not every sale and receipt row', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await owner.post('/v1/stores', { code: 'CP', name: 'Plans' });
    assert.equal(store.status, 201);
    const skus: string[] = [];
    for (let i = 0; i < 20; i++) {
      const sku = await owner.post('/v1/skus', { code: `P${i}-${randomUUID().slice(0, 4)}`, name: `Item ${i}`, unit: 'piece', price: 10 });
      assert.equal(sku.status, 201);
      skus.push(sku.body.id);
    }
    for (let round = 0; round < 10; round++) {
      const receipt = await owner.post(`/v1/stores/${store.body.id}/stock/receipts`, { items: skus.map((sku_id) => ({ sku_id, quantity: 5 })) });
      assert.equal(receipt.status, 201);
    }
    const ledgerRows = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1`, [tenantId])).rows[0].n;
    assert.equal(ledgerRows, 200);
    // A count as the system has it (no ledger row), for stock_count_matches_ledger to follow (with count rows: the test below).
    const counted = await owner.post(`/v1/stores/${store.body.id}/stock/counts`, { items: [{ sku_id: skus[0], counted_quantity: 50 }] });
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const client = await t.admin.connect();
    try {
      await client.query('ANALYZE stock_ledger');
      for (const name of ['consignment_stock_matches_ledger', 'consignment_settlement_matches_ledger', 'transfer_stock_ledger_names_transfer', 'stock_count_matches_ledger']) {
        const check = allChecks.find((candidate) => candidate.name === name)!;
        const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${check.sql}`, [tenantId]);
        const scans = scansOf(rows[0]['QUERY PLAN'][0].Plan, 'stock_ledger');
        assert.ok(scans.length > 0, `${name} reads the stock ledger`);
        for (const scan of scans) {
          const read = (scan['Actual Rows'] ?? 0) + (scan['Rows Removed by Filter'] ?? 0) + (scan['Rows Removed by Index Recheck'] ?? 0);
          assert.ok(read * (scan['Actual Loops'] ?? 1) < ledgerRows / 10, `${name}: ${scan['Node Type']} ${scan['Index Name'] ?? ''} read ${read} of ${ledgerRows} ledger rows`);
        }
      }
    } finally {
      client.release();
    }
  });

  it('the check of stock counts reads the count rows of the stock ledger, and one row per line at its counted_at, not every sale and receipt row', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'CC', name: 'Counted plans' })).body.id as string;
    const skus: string[] = [];
    for (let i = 0; i < 20; i++) {
      const sku = await owner.post('/v1/skus', { code: `Q${i}-${randomUUID().slice(0, 4)}`, name: `Item ${i}`, unit: 'piece', price: 10 });
      assert.equal(sku.status, 201);
      skus.push(sku.body.id);
    }
    for (let round = 0; round < 100; round++) {
      const receipt = await owner.post(`/v1/stores/${store}/stock/receipts`, { items: skus.map((sku_id) => ({ sku_id, quantity: 5 })) });
      assert.equal(receipt.status, 201);
    }
    // Counts that move stock (count rows in the ledger), one SKU counted twice (the second reads the first's row).
    for (const [sku, counted] of [[skus[0], 499], [skus[1], 498], [skus[1], 497], [skus[2], 500]] as const) {
      const response = await owner.post(`/v1/stores/${store}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: counted }] });
      assert.equal(response.status, 201, JSON.stringify(response.body));
    }
    const ledgerRows = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1`, [tenantId])).rows[0].n;
    assert.equal(ledgerRows, 2_003);
    const client = await t.admin.connect();
    try {
      await client.query('ANALYZE stock_ledger');
      const check = allChecks.find((candidate) => candidate.name === 'stock_count_matches_ledger')!;
      const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${check.sql}`, [tenantId]);
      const scans = scansOf(rows[0]['QUERY PLAN'][0].Plan, 'stock_ledger');
      assert.ok(scans.length > 0, 'the check reads the stock ledger');
      for (const scan of scans) {
        const read = (scan['Actual Rows'] ?? 0) + (scan['Rows Removed by Filter'] ?? 0) + (scan['Rows Removed by Index Recheck'] ?? 0);
        assert.ok(read * (scan['Actual Loops'] ?? 1) < ledgerRows / 10, `${scan['Node Type']} ${scan['Index Name'] ?? ''} read ${read} × ${scan['Actual Loops']} of ${ledgerRows} ledger rows`);
      }
    } finally {
      client.release();
    }
  });
  it('the check of count corrections reads the count_correction rows of the stock ledger (and its sales\' rows by operation), not every sale and receipt row', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'CK', name: 'Corrected plans' })).body.id as string;
    const skus: string[] = [];
    for (let i = 0; i < 20; i++) {
      const sku = await owner.post('/v1/skus', { code: `R${i}-${randomUUID().slice(0, 4)}`, name: `Item ${i}`, unit: 'piece', price: 10 });
      assert.equal(sku.status, 201);
      skus.push(sku.body.id);
    }
    for (let round = 0; round < 100; round++) {
      const receipt = await owner.post(`/v1/stores/${store}/stock/receipts`, { items: skus.map((sku_id) => ({ sku_id, quantity: 5 })) });
      assert.equal(receipt.status, 201);
    }
    // Tills' sales made before a count of their SKU that found them gone, synced after it: a count_correction row each.
    const tillSold = (await t.admin.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at as string;
    for (const sku of skus.slice(0, 3)) {
      const counted = await owner.post(`/v1/stores/${store}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: 499 }] });
      assert.equal(counted.status, 201, JSON.stringify(counted.body));
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: store, payment_method: 'cash', client_created_at: tillSold, items: [{ sku_id: sku, quantity: 1, unit_price: 10 }] }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    }
    const corrections = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND kind = 'count_correction'`, [tenantId])).rows[0].n;
    assert.equal(corrections, 3);
    const ledgerRows = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1`, [tenantId])).rows[0].n;
    assert.equal(ledgerRows, 2_009);
    const client = await t.admin.connect();
    try {
      await client.query('ANALYZE stock_ledger');
      const check = allChecks.find((candidate) => candidate.name === 'count_correction_matches_sale')!;
      const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${check.sql}`, [tenantId]);
      const scans = scansOf(rows[0]['QUERY PLAN'][0].Plan, 'stock_ledger');
      assert.ok(scans.length > 0, 'the check reads the stock ledger');
      for (const scan of scans) {
        const read = (scan['Actual Rows'] ?? 0) + (scan['Rows Removed by Filter'] ?? 0) + (scan['Rows Removed by Index Recheck'] ?? 0);
        assert.ok(read * (scan['Actual Loops'] ?? 1) < ledgerRows / 100, `${scan['Node Type']} ${scan['Index Name'] ?? ''} read ${read} × ${scan['Actual Loops']} of ${ledgerRows} ledger rows`);
      }
    } finally {
      client.release();
    }
  });
  it('the check of covered operations reads the till-timed sales, voids and returns and their rows, and the counts in each till\'s offline window, not every sale, row and count', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'CV', name: 'Covered plans' })).body.id as string;
    const skus: string[] = [];
    for (let i = 0; i < 10; i++) {
      const sku = await owner.post('/v1/skus', { code: `V${i}-${randomUUID().slice(0, 4)}`, name: `Item ${i}`, unit: 'piece', price: 10 });
      assert.equal(sku.status, 201);
      skus.push(sku.body.id);
    }
    for (let round = 0; round < 50; round++) {
      const receipt = await owner.post(`/v1/stores/${store}/stock/receipts`, { items: skus.map((sku_id) => ({ sku_id, quantity: 50 })) });
      assert.equal(receipt.status, 201);
    }
    const dbNow = async () => (await t.admin.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at as string;
    const sale = (sku: string, clientCreatedAt?: string) => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 10 }], ...(clientCreatedAt ? { client_created_at: clientCreatedAt } : {}) });
    // Online sales (most of a shop's sales) and counts of every SKU, one after another: the store's history of counts.
    for (let round = 0; round < 20; round++) {
      for (const sku of skus) assert.equal((await owner.post('/v1/sales', sale(sku), { idempotencyKey: randomUUID() })).status, 201);
      const counted = await owner.post(`/v1/stores/${store}/stock/counts`, { items: skus.map((sku_id, i) => ({ sku_id, counted_quantity: 400 - round - i })) });
      assert.equal(counted.status, 201, JSON.stringify(counted.body));
    }
    // Tills' sales synced at once (made just before), and three made before a count of their SKU, synced after it.
    const synced = await owner.post('/v1/sync/sales', { sales: Array.from({ length: 30 }, (_, i) => ({ idempotency_key: randomUUID(), ...sale(skus[i % 10]!, new Date().toISOString()) })) });
    assert.equal(synced.status, 200);
    const tillSold = await dbNow();
    const counted = await owner.post(`/v1/stores/${store}/stock/counts`, { items: skus.slice(0, 3).map((sku_id) => ({ sku_id, counted_quantity: 300 })) });
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const late = await owner.post('/v1/sync/sales', { sales: skus.slice(0, 3).map((sku) => ({ idempotency_key: randomUUID(), ...sale(sku, tillSold) })) });
    assert.equal(late.status, 200);
    for (const result of [...synced.body.results, ...late.body.results]) assert.equal(result.status, 201, JSON.stringify(result.body));
    const sizes = (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger, (SELECT count(*) FROM sales WHERE tenant_id = $1)::int AS sales,
                (SELECT count(*) FROM stock_counts WHERE tenant_id = $1)::int AS counts, (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1 AND kind = 'count_correction')::int AS corrections`,
        [tenantId],
      )
    ).rows[0];
    assert.deepEqual({ sales: sizes.sales, counts: sizes.counts, corrections: sizes.corrections }, { sales: 233, counts: 21, corrections: 3 });
    const client = await t.admin.connect();
    try {
      await client.query('ANALYZE stock_ledger, sales, stock_counts, stock_count_lines');
      const check = allChecks.find((candidate) => candidate.name === 'covered_sale_has_count_correction')!;
      // Tables this small are read whole by the planner (a few pages: 21 counts, read once per synced row); what is
      // asked here is that an index bounds every read, as it does on a shop's history: seq scans are discouraged.
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${check.sql}`, [tenantId]);
      await client.query('ROLLBACK');
      const plan = rows[0]['QUERY PLAN'][0].Plan as PlanNode;
      // At most what the 33 synced sales (one row each) and the counts in their tills' windows (the one covering
      // three) are, and the count_correction rows once per covered row (the planner reads so small an index whole:
      // every tenant's few): not the 200 online sales and their rows, nor the store's 20 earlier counts.
      const allCorrections = (await client.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE kind = 'count_correction'`)).rows[0].n as number;
      for (const [relation, most] of [['sales', 33], ['stock_ledger', 33 + 3 * allCorrections], ['stock_counts', 3], ['stock_count_lines', 3]] as const) {
        const scans = scansOf(plan, relation);
        const read = scans.reduce((sum, scan) => sum + ((scan['Actual Rows'] ?? 0) + (scan['Rows Removed by Filter'] ?? 0) + (scan['Rows Removed by Index Recheck'] ?? 0)) * (scan['Actual Loops'] ?? 1), 0);
        assert.ok(read <= most, `${relation}: read ${read} (at most ${most}): ${JSON.stringify(scans.map((scan) => [scan['Node Type'], scan['Index Name'], scan['Actual Rows'], scan['Actual Loops']]))}`);
      }
    } finally {
      client.release();
    }
  });
});
