import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { nestedPlansOf, planOf, type PlanNode } from '../../test/support/plans.js';
import type { Tx } from '../core/db.js';
import { listReviewItems } from '../integrity/listReviewItems.js';
import { listStockLedger } from '../inventory/listStockLedger.js';
import { listSkus } from '../inventory/queries.js';
import { listLowStock } from '../inventory/listLowStock.js';
import { listPointsOfSale } from '../field/queries.js';
import { listParties } from '../money/queries.js';
import { listSales } from '../sales/getSale.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';

/**
 * A page of a list is a range of an index from the cursor on — also in a
 * generic plan (a prepared statement reused: node-pg's named statements, a
 * pooler, plan_cache_mode = force_generic_plan), where a condition written
 * `($after IS NULL OR id > $after)` was a filter over the tenant's rows from
 * the first (see andIf in src/core/db.ts). The stock list has its own test
 * (src/inventory/stockList.int.spec.ts); these are the others.
 */

describe('every list page is an index range from its cursor, in a generic plan too', () => {
  const ROWS = 3000;
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let sku: string;
  let customer: string;
  const last: Record<string, string> = {};

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = await givenStore(owner, 'P-STORE');
    sku = await givenSku(owner, 'P-SKU');
    await givenStock(owner, store, [{ sku_id: sku, quantity: 5 }]);
    const party = (await owner.post('/v1/parties', { kind: 'customer', name: 'C' })).body.id as string;
    const pointOfSale = (await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, latitude: 1, longitude: 1 })).body.id as string;
    const opId = (await owner.get(`/v1/stores/${store}`)).body.op_id as string;
    const q = (text: string, values: unknown[]) => t.admin.query(text, values);
    // ROWS rows of each list, one INSERT … SELECT generate_series each.
    // (Not stores: a new store's triggers open its accounts and counters, minutes for thousands here;
    // listStores writes its cursor with the same andIf as listSkus, tested below.)
    await q(`INSERT INTO skus (tenant_id, id, code, name, unit, price, op_id) SELECT tenant_id, gen_random_uuid(), 'K' || lpad(n::text, 5, '0'), name, unit, price, op_id FROM skus, generate_series(1, $3::int) n WHERE tenant_id = $1 AND id = $2`, [tenantId, sku, ROWS]);
    await q(`INSERT INTO parties (tenant_id, id, kind, name, op_id) SELECT tenant_id, gen_random_uuid(), kind, name, op_id FROM parties, generate_series(1, $3::int) n WHERE tenant_id = $1 AND id = $2`, [tenantId, party, ROWS]);
    await q(
      `INSERT INTO points_of_sale (tenant_id, id, name, store_id, party_id, latitude, longitude, op_id) SELECT tenant_id, gen_random_uuid(), name, store_id, party_id, latitude, longitude, op_id FROM points_of_sale, generate_series(1, $3::int) n WHERE tenant_id = $1 AND id = $2`,
      [tenantId, pointOfSale, ROWS],
    );
    await q(`INSERT INTO review_items (tenant_id, id, kind, store_id, op_id) SELECT $1, gen_random_uuid(), 'test_item', $2, $3 FROM generate_series(1, $4::int)`, [tenantId, store, opId, ROWS]);
    await q(
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
       SELECT tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at FROM stock_ledger, generate_series(1, $3::int) n WHERE tenant_id = $1 AND store_id = $2`,
      [tenantId, store, ROWS],
    );
    // A store's sales: one through the API, ROWS copies a millisecond apart, older (a receipt number each).
    const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    await q(
      `INSERT INTO sales (tenant_id, id, store_id, receipt_number, status, payment_method, sale_type, source, total, op_id, created_at)
       SELECT tenant_id, gen_random_uuid(), store_id, receipt_number + n, status, payment_method, sale_type, source, total, op_id, created_at - n * interval '1 millisecond'
       FROM sales, generate_series(1, $3::int) n WHERE tenant_id = $1 AND id = $2`,
      [tenantId, sale.body.id, ROWS],
    );
    // A reorder level of every SKU in the store, above its stock (none but P-SKU's 5 held): every one low.
    await q(
      `INSERT INTO stock_reorder_levels (tenant_id, store_id, sku_id, quantity, op_id, changed_by_op) SELECT tenant_id, $2, id, 1000, op_id, op_id FROM skus WHERE tenant_id = $1`,
      [tenantId, store],
    );
    // A balance row of every SKU in the store (at 0, as a count of none leaves one): a page's balances are found
    // by key among the store's thousands, as in a shop — with one row the planner rightly read the table whole.
    await q(
      `INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) SELECT tenant_id, $2, id, 0 FROM skus WHERE tenant_id = $1 ON CONFLICT DO NOTHING`,
      [tenantId, store],
    );
    // Sales a filter keeps that are rare among the store's: RARE voided ones, one every 20 of the copies, and
    // RARE completed ones of a customer, between them (a receipt number each, after the copies').
    const RARE = ROWS / 20;
    await q(
      `INSERT INTO sales (tenant_id, id, store_id, receipt_number, status, payment_method, sale_type, source, total, op_id, created_at, voided_by_op, voided_at, void_reason)
       SELECT tenant_id, gen_random_uuid(), store_id, receipt_number + $3 + n, 'voided', payment_method, sale_type, source, total, op_id,
              created_at - (20 * n) * interval '1 millisecond' - interval '300 microseconds', op_id, created_at, 'test void'
       FROM sales, generate_series(1, $4::int) n WHERE tenant_id = $1 AND id = $2`,
      [tenantId, sale.body.id, ROWS, RARE],
    );
    await q(
      `INSERT INTO sales (tenant_id, id, store_id, receipt_number, status, payment_method, sale_type, source, total, op_id, created_at, customer_id)
       SELECT tenant_id, gen_random_uuid(), store_id, receipt_number + $3 + $4 + n, status, 'credit', sale_type, source, total, op_id,
              created_at - (20 * n + 10) * interval '1 millisecond' - interval '600 microseconds', $5::uuid
       FROM sales, generate_series(1, $4::int) n WHERE tenant_id = $1 AND id = $2`,
      [tenantId, sale.body.id, ROWS, RARE, party],
    );
    customer = party;
    // SKUs whose name holds a word few have: one every 25. The table holds another tenant's SKUs too (ten
    // times as many here), as many needles among them: a search of this tenant's reads none of them.
    await q(`UPDATE skus SET name = 'Blue needle ' || code WHERE tenant_id = $1 AND code LIKE 'K%' AND substr(code, 2)::int % 25 = 0`, [tenantId]);
    const other = await t.newTenant();
    const otherSku = await givenSku(other.owner, 'O-SKU');
    await q(
      `INSERT INTO skus (tenant_id, id, code, name, unit, price, op_id) SELECT tenant_id, gen_random_uuid(), 'K' || lpad(n::text, 5, '0'), CASE WHEN n % 25 = 0 THEN 'Needle no. ' ELSE 'Thread no. ' END || n, unit, price, op_id FROM skus, generate_series(1, $3::int) n WHERE tenant_id = $1 AND id = $2`,
      [other.tenantId, otherSku, ROWS * 10],
    );
    await t.admin.query('ANALYZE skus, parties, points_of_sale, review_items, stock_ledger, sales, stock_reorder_levels, stock_balances');
    const middle = async (text: string) => String((await q(text, [tenantId])).rows[0].v);
    last.skus = await middle(`SELECT code AS v FROM skus WHERE tenant_id = $1 ORDER BY code OFFSET ${ROWS / 2} LIMIT 1`);
    last.parties = await middle(`SELECT id AS v FROM parties WHERE tenant_id = $1 ORDER BY id OFFSET ${ROWS / 2} LIMIT 1`);
    last.points = await middle(`SELECT id AS v FROM points_of_sale WHERE tenant_id = $1 ORDER BY id OFFSET ${ROWS / 2} LIMIT 1`);
    last.review = await middle(`SELECT id AS v FROM review_items WHERE tenant_id = $1 ORDER BY id DESC OFFSET ${ROWS / 2} LIMIT 1`);
    last.sales = await middle(
      `SELECT json_build_object('created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'receipt_number', receipt_number)::text AS v
       FROM sales WHERE tenant_id = $1 ORDER BY created_at DESC, receipt_number DESC OFFSET ${ROWS / 2} LIMIT 1`,
    );
    last.low = await middle(`SELECT sku_id AS v FROM stock_reorder_levels WHERE tenant_id = $1 ORDER BY sku_id OFFSET ${ROWS / 2} LIMIT 1`);
    const salesAfter = (where: string) =>
      middle(
        `SELECT json_build_object('created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'receipt_number', receipt_number)::text AS v
         FROM sales WHERE tenant_id = $1 AND ${where} ORDER BY created_at DESC, receipt_number DESC OFFSET ${RARE / 2} LIMIT 1`,
      );
    last.voided = await salesAfter(`status = 'voided'`);
    last.completed = await middle(
      `SELECT json_build_object('created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'receipt_number', receipt_number)::text AS v
       FROM sales WHERE tenant_id = $1 AND status = 'completed' ORDER BY created_at DESC, receipt_number DESC OFFSET ${ROWS / 2} LIMIT 1`,
    );
    last.customer = await salesAfter(`customer_id IS NOT NULL`);
    last.ledger = await middle(`SELECT id AS v FROM stock_ledger WHERE tenant_id = $1 ORDER BY id DESC OFFSET ${ROWS / 2} LIMIT 1`);
  });
  after(() => t.close());

  /** The generic plan (EXPLAIN ANALYZE of a prepared statement under force_generic_plan) of exactly the query the code sends. */
  const genericPlan = (read: (tx: Tx) => Promise<unknown>) => planOf(t.db, tenantId, read, 'generic');


  const lists: Array<[string, string, RegExp, (tx: Tx, after: string | undefined) => Promise<unknown>]> = [
    ['skus', 'skus', /code > /, (tx, after) => listSkus(tx, tenantId, after, 51)],
    ['parties', 'parties', /id > /, (tx, after) => listParties(tx, tenantId, undefined, after, 51)],
    ['points', 'points_of_sale', /id > /, (tx, after) => listPointsOfSale(tx, tenantId, null, {}, after, 51)],
    ['review', 'review_items', /id < /, (tx, after) => listReviewItems(tx, tenantId, { storeIds: null, beforeId: after, limit: 51 })],
    ['ledger', 'stock_ledger', /id < /, (tx, after) => listStockLedger(tx, tenantId, store, sku, after, 51)],
    ['low', 'stock_reorder_levels', /sku_id > /, (tx, after) => listLowStock(tx, tenantId, store, after, 51)],
    ['sales', 'sales', /created_at <= /, (tx, after) => listSales(tx, tenantId, store, {}, after === undefined ? undefined : JSON.parse(after), 51)],
    ['voided', 'sales', /created_at <= /, (tx, after) => listSales(tx, tenantId, store, { status: 'voided' }, after === undefined ? undefined : JSON.parse(after), 51)],
    ['completed', 'sales', /created_at <= /, (tx, after) => listSales(tx, tenantId, store, { status: 'completed' }, after === undefined ? undefined : JSON.parse(after), 51)],
    ['customer', 'sales', /created_at <= /, (tx, after) => listSales(tx, tenantId, store, { customerId: customer }, after === undefined ? undefined : JSON.parse(after), 51)],
  ];

  it('the low-stock list reads each SKU and balance of its page by key, never a scan of the tenant\'s SKUs or the store\'s balances', async () => {
    for (const after of [undefined, last.low]) {
      const nodes = await genericPlan((tx) => listLowStock(tx, tenantId, store, after, 51));
      const label = JSON.stringify(nodes.map((node) => [node['Node Type'], node['Relation Name'], node['Index Name'], node['Actual Rows'], node['Actual Loops']]));
      for (const node of nodes.filter((node) => node['Relation Name'] === 'skus' || node['Relation Name'] === 'stock_balances')) {
        assert.match(node['Node Type'], /^Index (Only )?Scan$/, label);
        assert.ok((node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 1) <= 52, label);
      }
    }
  });

  for (const [name, table, cursorCondition, read] of lists) {
    it(`${name === table || name === 'points' || name === 'review' || name === 'ledger' ? table : `${table} (${name})`}: the first page and one from the middle of ${ROWS} rows read the page (51 rows), not the rows before it`, async () => {
      for (const after of [undefined, last[name]]) {
        const nodes = await genericPlan((tx) => read(tx, after));
        const label = `${table} after ${after ?? 'nothing'}: ${JSON.stringify(nodes.map((node) => [node['Node Type'], node['Relation Name'], node['Index Name'], node['Index Cond']]))}`;
        const scans = nodes.filter((node) => node['Relation Name'] === table);
        assert.equal(scans.length, 1, label);
        assert.match(scans[0]!['Node Type'], /^Index (Only )?Scan( Backward)?$/, label);
        if (after !== undefined) assert.match(scans[0]!['Index Cond'] ?? '', cursorCondition, label);
        const rowsRead = (scans[0]!['Actual Rows'] ?? 0) + (scans[0]!['Rows Removed by Filter'] ?? 0);
        // The sales list's index ends at created_at: its range starts AT the cursor's moment (the cursor's
        // own sale, read and filtered out) and the incremental sort by receipt number reads one row past
        // the page to close its last group of equal created_at.
        // The completed sales walk the store's index past the voided ones among them (one in 20 here, ~1 % in a shop):
        // a page of 51 passes a few. The voided ones and a customer's have indexes of their own (migration 1360),
        // which a plain completed sale without a customer never enters: rare among the store's, they are read a page at a time.
        const most = name === 'completed' ? 53 + 4 : table === 'sales' ? 53 : 52;
        assert.ok(rowsRead <= most, `${label}: read ${rowsRead} rows for a page of 51`);
      }
    });
  }

  it('skus by exact code: the one row of the unique index (tenant, code), in a generic plan too', async () => {
    for (const code of ['K01500', 'nothing']) {
      const nodes = await genericPlan((tx) => listSkus(tx, tenantId, undefined, 51, { code }));
      const scans = nodes.filter((node) => node['Relation Name'] === 'skus');
      const label = JSON.stringify(scans.map((node) => [node['Node Type'], node['Index Name'], node['Index Cond']]));
      assert.equal(scans.length, 1, label);
      assert.match(scans[0]!['Node Type'], /^Index (Only )?Scan$/, label);
      assert.ok((scans[0]!['Actual Rows'] ?? 0) + (scans[0]!['Rows Removed by Filter'] ?? 0) <= 1, label);
    }
  });

  it(`skus by text (?q=): skus_matching reads the tenant's SKUs that hold the text (${ROWS / 25} of ${ROWS + 1}) through the trigram index, not the others nor other tenants', first page and middle, generic plan too`, async () => {
    const matches = ROWS / 25;
    const middle = String((await t.admin.query(`SELECT code FROM skus WHERE tenant_id = $1 AND name ILIKE '%needle%' ORDER BY code OFFSET ${matches / 2} LIMIT 1`, [tenantId])).rows[0].code);
    // The text, the cursor, and how many of the tenant's SKUs hold it after the cursor (the middle one is the 61st of 120).
    for (const [text, after, found] of [['NEEDLE', undefined, matches], ['needle', middle, matches / 2 - 1], ['Blue N', undefined, matches]] as const) {
      for (const plan of ['generic', 'auto'] as const) {
        const read = (tx: Tx) => listSkus(tx, tenantId, after, 51, { q: text });
        // The query the code sends: the function's matches, the page of them by code.
        const outer = await planOf(t.db, tenantId, read, plan);
        const label = `${plan} ${text} after ${after ?? 'nothing'}`;
        assert.deepEqual(outer.filter((node) => node['Relation Name'] === 'skus'), [], `${label}: the page is read by skus_matching only`);
        const outerLabel = `${label}: ${JSON.stringify(outer.map((node) => [node['Node Type'], node['Actual Rows']]))}`;
        assert.equal(outer[0]!['Actual Rows'], 51, outerLabel);
        assert.equal(outer.find((node) => node['Node Type'] === 'Function Scan')?.['Actual Rows'], found, outerLabel);
        // The function's own statement, as the app role in the tenant.
        const inner = await nestedPlansOf(t.admin, t.db, tenantId, read, plan);
        const scans = inner.flat().filter((node) => node['Relation Name'] === 'skus');
        const described = `${label}: ${JSON.stringify(inner.flat().map((node) => [node['Node Type'], node['Relation Name'], node['Index Name'], node['Actual Rows'], node['Rows Removed by Filter']]))}`;
        assert.equal(scans.length, 1, described);
        assert.equal(scans[0]!['Node Type'], 'Bitmap Heap Scan', described);
        const trigrams = inner.flat().filter((node) => node['Node Type'] === 'Bitmap Index Scan').map((node) => node['Index Name']);
        assert.deepEqual(trigrams.sort(), ['skus_code_search_idx', 'skus_name_search_idx'], described);
        const heap = scans[0] as PlanNode & { 'Rows Removed by Index Recheck'?: number };
        const rowsRead = (heap['Actual Rows'] ?? 0) + (heap['Rows Removed by Filter'] ?? 0) + (heap['Rows Removed by Index Recheck'] ?? 0);
        assert.ok(rowsRead <= matches, `${described}: read ${rowsRead} rows for ${matches} SKUs holding the text`);
      }
    }
  });
});
