import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { nodesOf, planOf, type PlanNode } from '../../test/support/plans.js';
import { allChecks } from '../integrity/registry.js';
import { postSaleVoid } from '../money/postSale.js';
import { returnableLines } from './returnSale.js';
import { givenSku, givenStock, givenStore } from './testkit.js';

/**
 * Every return and every void reads what earlier returns took back from each
 * line of its sale (returnableLines). That read must find the sale's return
 * lines by index, whatever the tenant's history: it is on the void's path,
 * which every shop takes, returns or not.
 */
describe('the returned quantities a return or a void reads', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let sku: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'P1');
    sku = await givenSku(owner, 'SOAP', 'piece', 100);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 100_000 }]);
  });
  after(() => t.close());

  /** Return lines a plan read (rows returned and removed by filter, over every loop). */
  const returnLinesRead = (nodes: PlanNode[]) =>
    nodes
      .filter((node) => node['Relation Name'] === 'sale_return_items')
      .reduce((sum, node) => sum + ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1), 0);

  it('reads only the sale\'s own return lines (by index), not every return line of the tenant', async () => {
    // Given a history of 150 sales of 3 lines, each partly returned
    const sold: string[] = [];
    for (let i = 0; i < 150; i++) {
      const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [1, 2, 3].map(() => ({ sku_id: sku, quantity: 2, unit_price: 100 })) }, { idempotencyKey: randomUUID() });
      assert.equal(sale.status, 201);
      sold.push(sale.body.id);
      const returned = await owner.post(`/v1/sales/${sale.body.id}/returns`, { items: [{ sku_id: sku, quantity: 5 }], reason: 'back' }, { idempotencyKey: randomUUID() });
      assert.equal(returned.status, 201, JSON.stringify(returned.body));
    }
    await t.admin.query('ANALYZE sale_return_items');
    // When the lines of one sale are read as a return or a void reads them
    for (const plan of ['auto', 'generic'] as const) {
      const nodes = await planOf(t.db, tenantId, (tx) => returnableLines(tx, tenantId, sold[75]!), plan);
      // Then the return lines read are that sale's (3 lines), never the tenant's (450)
      const read = returnLinesRead(nodes);
      assert.ok(read <= 3 * 3, `${plan}: ${read} return lines read for a sale of 3 lines (${JSON.stringify(nodes.filter((node) => node['Relation Name'] === 'sale_return_items').map((node) => [node['Node Type'], node['Index Name'], node['Index Cond']]))})`);
    }
    const lines = await t.admin.query(`SELECT count(*)::int AS n FROM sale_return_items WHERE tenant_id = $1`, [tenantId]);
    assert.equal(lines.rows[0].n, 450);
  });

  it('a void reads the entries of its sale and of its returns by index, not every entry of the tenant', async () => {
    const sale = (await t.admin.query(`SELECT id, store_id FROM sales WHERE tenant_id = $1 ORDER BY receipt_number OFFSET 75 LIMIT 1`, [tenantId])).rows[0] as { id: string; store_id: string };
    await t.admin.query('ANALYZE journal_entries');
    const entries = (await t.admin.query(`SELECT count(*)::int AS n FROM journal_entries WHERE tenant_id = $1`, [tenantId])).rows[0].n as number;
    assert.ok(entries >= 300, `${entries} entries`);
    for (const plan of ['auto', 'generic'] as const) {
      // the first statement postSaleVoid sends: the postings of the sale's entry and of its returns' entries
      const nodes = await planOf(t.db, tenantId, (tx) => postSaleVoid(tx, { tenantId, opId: randomUUID() }, sale), plan);
      const read = nodes
        .filter((node) => node['Relation Name'] === 'journal_entries')
        .reduce((sum, node) => sum + ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1), 0);
      assert.ok(read <= 10, `${plan}: ${read} journal entries read for a sale with one return, of ${entries} (${JSON.stringify(nodes.filter((node) => node['Relation Name'] === 'journal_entries').map((node) => [node['Node Type'], node['Index Name'], node['Index Cond']]))})`);
    }
  });

  it('sale_stock_matches_items sums the return lines once, not every return line of the tenant once per sale line', async () => {
    // Given the history above (150 sales of 3 lines, 450 return lines), plus a sale without returns
    const { rows: counts } = await t.admin.query(`SELECT (SELECT count(*) FROM sale_items WHERE tenant_id = $1)::int AS items, (SELECT count(*) FROM sale_return_items WHERE tenant_id = $1)::int AS return_lines`, [tenantId]);
    assert.deepEqual(counts, [{ items: 450, return_lines: 450 }]);
    const check = allChecks.find((candidate) => candidate.name === 'sale_stock_matches_items')!;
    const { rows } = await t.admin.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${check.sql}`, [tenantId]);
    const read = returnLinesRead(nodesOf(rows[0]['QUERY PLAN'][0].Plan as PlanNode));
    // Each return line read a bounded number of times (once in the set-based sum, once per other use), far from 450 per sale line
    assert.ok(read <= 450 * 4, `sale_stock_matches_items read ${read} return lines for 450 sale lines and 450 return lines`);
  });
});
