import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

describe('sales post to the ledger in the sale\'s own transaction', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let sku: { id: string };
  let customer: { id: string };
  let supplier: { id: string };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'SP', name: 'Sale postings' })).body;
    sku = (await owner.post('/v1/skus', { code: 'APPLE', name: 'Apple', unit: 'piece', price: 50 })).body;
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 100_000 }] });
    customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Credit Carl' })).body;
    supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Not a customer' })).body;
  });
  after(() => t.close());

  const balance = async (key: string) =>
    Number((await t.admin.query(`SELECT balance FROM accounts WHERE tenant_id = $1 AND key = $2`, [tenantId, key])).rows[0]?.balance ?? 0);
  const sell = (payment_method: string, quantity: number, extra: Record<string, unknown> = {}) =>
    owner.post('/v1/sales', { store_id: store.id, payment_method, items: [{ sku_id: sku.id, quantity, unit_price: 50 }], ...extra });
  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM sales WHERE tenant_id = $1)::int AS sales,
                (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings,
                (SELECT coalesce(sum(last_number), 0)::int FROM store_receipt_counters WHERE tenant_id = $1) AS receipts,
                (SELECT coalesce(sum(quantity), 0)::bigint FROM stock_balances WHERE tenant_id = $1) AS stock`,
        [tenantId],
      )
    ).rows[0];

  it('cash → drawer, card/mobile → clearing, credit → the customer\'s receivable; revenue credited each time', async () => {
    const drawer = `store/${store.id}/cash_drawer`;
    const revenue = `store/${store.id}/sales_revenue`;
    const cases: Array<[string, string, Record<string, unknown>]> = [
      ['cash', drawer, {}],
      ['card', `store/${store.id}/card_clearing`, {}],
      ['mobile', `store/${store.id}/mobile_clearing`, {}],
      ['credit', `party/${customer.id}`, { customer_id: customer.id }],
    ];
    for (const [method, debited, extra] of cases) {
      const [debitBefore, revenueBefore] = [await balance(debited), await balance(revenue)];
      const sale = await sell(method, 3, extra);
      assert.equal(sale.status, 201, JSON.stringify(sale.body));
      assert.equal(sale.body.total, 150);
      assert.equal(await balance(debited), debitBefore + 150, method);
      assert.equal(await balance(revenue), revenueBefore - 150, method);
      const entries = await t.admin.query(`SELECT kind, op_id, store_id FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, sale.body.id]);
      assert.deepEqual(entries.rows, [{ kind: 'sale', op_id: sale.body.op_id, store_id: store.id }]);
    }
    const listed = (await owner.get('/v1/ledger/customers')).body.items.find((row: { party_id: string }) => row.party_id === customer.id);
    assert.deepEqual([listed.debit_total, listed.credit_total, listed.outstanding], [150, 0, 150]);
  });

  it('a void posts the exact reversal; voiding twice posts nothing more', async () => {
    const sale = await sell('credit', 4, { customer_id: customer.id });
    const receivable = await balance(`party/${customer.id}`);
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'returned' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.equal(await balance(`party/${customer.id}`), receivable - 200);
    const before = await counts();
    assert.equal((await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'again' })).status, 200);
    assert.deepEqual(await counts(), before);
    const postings = await t.admin.query(
      `SELECT e.kind, a.key, p.amount::int FROM journal_entries e JOIN postings p ON p.entry_id = e.id JOIN accounts a ON a.id = p.account_id
       WHERE e.tenant_id = $1 AND e.subject_id = $2 ORDER BY e.kind, a.key`,
      [tenantId, sale.body.id],
    );
    assert.deepEqual(postings.rows, [
      { kind: 'sale', key: `party/${customer.id}`, amount: 200 },
      { kind: 'sale', key: `store/${store.id}/sales_revenue`, amount: -200 },
      { kind: 'sale_void', key: `party/${customer.id}`, amount: -200 },
      { kind: 'sale_void', key: `store/${store.id}/sales_revenue`, amount: 200 },
    ]);
  });

  for (const [name, extra] of [
    ['a credit sale without customer_id', {}],
    ['a credit sale with an unknown customer', { customer_id: randomUUID() }],
    ['a credit sale naming a supplier', { customer_id: '' }],
  ] as Array<[string, Record<string, unknown>]>) {
    it(`${name} → 400 validation_failed, nothing written (no receipt number, no stock, no postings)`, async () => {
      const body = extra.customer_id === '' ? { customer_id: supplier.id } : extra;
      const before = await counts();
      const response = await sell('credit', 1, body);
      assert.equal(response.status, 400, JSON.stringify(response.body));
      assert.equal(response.body.code, 'validation_failed');
      assert.equal(response.body.errors[0].path, '/body/customer_id');
      assert.deepEqual(await counts(), before);
    });
  }

  it('concurrent group-committed cash sales each add their own amount to the drawer (no lost update)', async () => {
    const drawer = `store/${store.id}/cash_drawer`;
    const drawerBefore = await balance(drawer);
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => sell('cash', 1 + (i % 5))));
    assert.ok(responses.every((r) => r.status === 201));
    const expected = responses.reduce((sum, r) => sum + r.body.total, 0);
    assert.equal(await balance(drawer), drawerBefore + expected);
    const batched = await t.admin.query(`SELECT count(*)::int AS n FROM journal_entries WHERE tenant_id = $1 AND kind = 'sale'`, [tenantId]);
    assert.ok(batched.rows[0].n >= 200);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('in a group-committed batch, a refused sale takes its postings with it and the others keep theirs', async () => {
    const scarce = (await owner.post('/v1/skus', { code: 'SCARCE', name: 'Scarce', unit: 'piece', price: 70 })).body;
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: scarce.id, quantity: 50 }] });
    const drawer = `store/${store.id}/cash_drawer`;
    const drawerBefore = await balance(drawer);
    const entriesBefore = (await counts()).entries;
    const responses = await Promise.all(
      Array.from({ length: 100 }, () =>
        owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: scarce.id, quantity: 1, unit_price: 70 }] }, { idempotencyKey: randomUUID() }),
      ),
    );
    assert.equal(responses.filter((r) => r.status === 201).length, 50);
    assert.equal(responses.filter((r) => r.status === 409).length, 50);
    assert.equal(await balance(drawer), drawerBefore + 50 * 70);
    assert.equal((await counts()).entries, entriesBefore + 50);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the settlement counts the day\'s cash sales and cash voids of the store', async () => {
    const { owner: o2, tenantId: t2 } = await t.newTenant();
    const shop = (await o2.post('/v1/stores', { code: 'X', name: 'X' })).body;
    const item = (await o2.post('/v1/skus', { code: 'P', name: 'P', unit: 'piece', price: 100 })).body;
    await o2.post(`/v1/stores/${shop.id}/stock/receipts`, { items: [{ sku_id: item.id, quantity: 100 }] });
    await o2.patch('/v1/tenant/settings', { settlement_float: 5_000 });
    const sale = (method: string) => o2.post('/v1/sales', { store_id: shop.id, payment_method: method, items: [{ sku_id: item.id, quantity: 2, unit_price: 100 }] });
    const a = await sale('cash');
    await sale('cash');
    await sale('card');
    await o2.post(`/v1/sales/${a.body.id}/void`, { reason: 'mistake' });
    const today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    const settlement = await o2.post('/v1/settlements', { store_id: shop.id, business_date: today, declared_cash: 5_150 });
    assert.equal(settlement.status, 201, JSON.stringify(settlement.body));
    assert.deepEqual(
      [settlement.body.cash_sales, settlement.body.cash_voids, settlement.body.expected_cash, settlement.body.variance],
      [400, 200, 5_200, -50],
    );
    assert.deepEqual(await integrityFindings(t.admin, t2), []);
  });

  it('an offline sale synced later counts in the settlement of the day the till took the cash', async () => {
    const { owner: o3, tenantId: t3 } = await t.newTenant();
    const shop = (await o3.post('/v1/stores', { code: 'OFF', name: 'Offline' })).body;
    const item = (await o3.post('/v1/skus', { code: 'O', name: 'O', unit: 'piece', price: 100 })).body;
    await o3.post(`/v1/stores/${shop.id}/stock/receipts`, { items: [{ sku_id: item.id, quantity: 10 }] });
    const yesterday = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date - 1, 'YYYY-MM-DD') AS d`)).rows[0].d;
    const synced = await o3.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: shop.id, payment_method: 'cash', items: [{ sku_id: item.id, quantity: 3, unit_price: 100 }], client_created_at: `${yesterday}T18:00:00Z` }],
    });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const entry = (await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE tenant_id = $1 AND kind = 'sale'`, [t3])).rows;
    assert.deepEqual(entry, [{ d: yesterday }]);
    const settlement = await o3.post('/v1/settlements', { store_id: shop.id, business_date: yesterday, declared_cash: 300 });
    assert.equal(settlement.status, 201, JSON.stringify(settlement.body));
    assert.deepEqual([settlement.body.cash_sales, settlement.body.expected_cash, settlement.body.variance], [300, 300, 0]);
    // A till clock in the future never books into a day that has not started.
    const future = await o3.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: shop.id, payment_method: 'cash', items: [{ sku_id: item.id, quantity: 1, unit_price: 100 }], client_created_at: '2999-01-01T00:00:00Z' }],
    });
    assert.equal(future.body.results[0].status, 201);
    const dates = (await t.admin.query(`SELECT business_date <= (now() AT TIME ZONE 'UTC')::date AS ok FROM journal_entries WHERE tenant_id = $1`, [t3])).rows;
    assert.ok(dates.every((row) => row.ok));
  });

  it("a till whose clock was reset (1970), or a sale of a day the shop skipped counting, books on the first open day after the store's latest count — the count that finds its cash", async () => {
    const { owner: o4, tenantId: t4 } = await t.newTenant();
    const counted = (await o4.post('/v1/stores', { code: 'CNT', name: 'Counted' })).body;
    const never = (await o4.post('/v1/stores', { code: 'NVR', name: 'Never counted' })).body;
    const item = (await o4.post('/v1/skus', { code: 'C', name: 'C', unit: 'piece', price: 100 })).body;
    for (const store of [counted, never]) await o4.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: item.id, quantity: 10 }] });
    const { today, yesterday, threeDaysAgo } = (
      await t.admin.query(
        `SELECT to_char(d, 'YYYY-MM-DD') AS today, to_char(d - 1, 'YYYY-MM-DD') AS yesterday, to_char(d - 3, 'YYYY-MM-DD') AS "threeDaysAgo"
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) x`,
      )
    ).rows[0];
    // Given the store counted yesterday (and never the day three days ago)
    assert.equal((await o4.post('/v1/settlements', { store_id: counted.id, business_date: yesterday, declared_cash: 0 })).status, 201);
    // When a till syncs a sale stamped 1970-01-01 (its clock reset) and one of three days ago, in each store
    const sync = (store: string, at: string, quantity: number) =>
      o4.post('/v1/sync/sales', { sales: [{ idempotency_key: randomUUID(), store_id: store, payment_method: 'cash', items: [{ sku_id: item.id, quantity, unit_price: 100 }], client_created_at: at }] });
    for (const [store, at, quantity] of [
      [counted.id, '1970-01-01T09:00:00Z', 1],
      [counted.id, `${threeDaysAgo}T09:00:00Z`, 2],
      [never.id, `${threeDaysAgo}T09:00:00Z`, 4],
    ] as const) {
      const synced = await sync(store, at, quantity);
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    }
    // Then the counted store's cash is booked today, the first day after its latest count
    const dates = async (store: string) =>
      (await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE tenant_id = $1 AND store_id = $2 AND kind = 'sale' ORDER BY 1`, [t4, store])).rows.map((row) => row.d);
    assert.deepEqual(await dates(counted.id), [today, today]);
    // and today's count expects it
    const count = await o4.post('/v1/settlements', { store_id: counted.id, business_date: today, declared_cash: 300 });
    assert.equal(count.status, 201, JSON.stringify(count.body));
    assert.deepEqual([count.body.cash_sales, count.body.variance], [300, 0]);
    // A store never counted keeps the till's day
    assert.deepEqual(await dates(never.id), [threeDaysAgo]);
    assert.deepEqual(await integrityFindings(t.admin, t4), []);
  });

  it('a transfer approval racing a sale on the last units of the source: never negative, exactly one wins', async () => {
    const other = (await owner.post('/v1/stores', { code: 'SP2', name: 'Other' })).body;
    for (let round = 0; round < 15; round++) {
      const last = (await owner.post('/v1/skus', { code: `LAST-${round}`, name: 'Last', unit: 'piece', price: 10 })).body;
      await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: last.id, quantity: 2 }] });
      const transfer = await owner.post('/v1/transfers', { source_store_id: store.id, destination_store_id: other.id, items: [{ sku_id: last.id, quantity: 2 }] });
      const [approve, sale] = await Promise.all([
        owner.post(`/v1/transfers/${transfer.body.id}/approve`),
        owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: last.id, quantity: 2, unit_price: 10 }] }),
      ]);
      assert.equal([approve.status, sale.status].filter((s) => s === 200 || s === 201).length, 1, `${approve.status} ${sale.status}`);
      const loser = approve.status === 200 ? sale : approve;
      assert.equal(loser.status, 409);
      assert.equal(loser.body.code, 'insufficient_stock');
      const row = (
        await t.admin.query(
          `SELECT b.quantity::int, (SELECT coalesce(sum(quantity_change), 0)::int FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id) AS ledger
           FROM stock_balances b WHERE b.tenant_id = $1 AND b.store_id = $2 AND b.sku_id = $3`,
          [tenantId, store.id, last.id],
        )
      ).rows[0];
      assert.deepEqual(row, { quantity: 0, ledger: 0 });
      const status = (await t.admin.query(`SELECT status FROM stock_transfers WHERE id = $1`, [transfer.body.id])).rows[0].status;
      assert.equal(status, approve.status === 200 ? 'approved' : 'requested');
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
  it('the database refuses a posting or a sale line naming another operation than its entry\'s or its sale\'s', async () => {
    const first = await sell('cash', 1);
    const second = await sell('cash', 1);
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    const opOf = async (saleId: string) => (await t.admin.query(`SELECT op_id FROM sales WHERE id = $1`, [saleId])).rows[0].op_id as string;
    const [firstOp, secondOp] = [await opOf(first.body.id), await opOf(second.body.id)];
    const entry = (await t.admin.query(`SELECT id FROM journal_entries WHERE tenant_id = $1 AND op_id = $2`, [tenantId, firstOp])).rows[0].id as string;
    const account = (await t.admin.query(`SELECT id FROM accounts WHERE tenant_id = $1 AND key = $2`, [tenantId, `store/${store.id}/cash_drawer`])).rows[0].id;
    const refusal = async (statement: string, params: unknown[]) => {
      const client = await t.admin.connect();
      try {
        await client.query('BEGIN');
        await client.query(statement, params);
        return 'accepted';
      } catch (error) {
        return `${(error as { code?: string }).code} ${(error as { constraint?: string }).constraint}`;
      } finally {
        await client.query('ROLLBACK');
        client.release();
      }
    };
    // A balanced pair, so only the keys can refuse it.
    const postings = `INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, 7, $4), ($1, $2, $3, -7, $4)`;
    assert.equal(await refusal(postings, [tenantId, entry, account, secondOp]), '23503 postings_entry_op_fkey');
    assert.equal(await refusal(postings, [tenantId, entry, account, randomUUID()]), '23503 postings_entry_op_fkey');
    assert.equal(await refusal(postings, [tenantId, randomUUID(), account, firstOp]), '23503 postings_entry_op_fkey');
    assert.equal(await refusal(postings, [tenantId, entry, account, firstOp]), 'accepted');
    const line = `INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, op_id)
                  VALUES ($1, $2, $3, 99, $4, 1, 50, 50, $5)`;
    assert.equal(await refusal(line, [tenantId, randomUUID(), first.body.id, sku.id, secondOp]), '23503 sale_items_sale_op_fkey');
    assert.equal(await refusal(line, [tenantId, randomUUID(), randomUUID(), sku.id, firstOp]), '23503 sale_items_sale_op_fkey');
    assert.equal(await refusal(line, [tenantId, randomUUID(), first.body.id, sku.id, firstOp]), 'accepted');
  });
});
