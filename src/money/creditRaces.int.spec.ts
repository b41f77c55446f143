import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

/**
 * A customer's tab under load: credit sales, their voids, the customer paying
 * and being refunded cash, the day being counted and the balances being paged
 * — all at once, through the HTTP API — then the rows left behind.
 */
describe('a credit customer racing sales, voids, payments, a count and the balances list', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('a payment naming a party of another tenant is 400 and writes nothing in either tenant', async () => {
    const a = await t.newTenant();
    const b = await t.newTenant();
    const store = (await a.owner.post('/v1/stores', { code: 'A1', name: 'A' })).body as { id: string };
    const theirs = (await b.owner.post('/v1/parties', { kind: 'customer', name: 'Not yours' })).body as { id: string };
    const rows = async () =>
      (
        await t.admin.query(
          `SELECT (SELECT count(*) FROM payments WHERE tenant_id = ANY($1::uuid[]))::int AS payments,
                  (SELECT count(*) FROM journal_entries WHERE tenant_id = ANY($1::uuid[]))::int AS entries,
                  (SELECT coalesce(sum(debit_total + credit_total), 0)::bigint FROM accounts WHERE tenant_id = ANY($1::uuid[])) AS moved`,
          [[a.tenantId, b.tenantId]],
        )
      ).rows[0];
    const before = await rows();
    const response = await a.owner.post('/v1/payments', { party_id: theirs.id, store_id: store.id, method: 'cash', amount: 500 }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 400, JSON.stringify(response.body));
    assert.match(String(response.headers.get('content-type')), /application\/problem\+json/);
    assert.deepEqual(await rows(), before);
  });

  it('credit sales, voids of them, cash payments in and refunds out, a count of today and paging the customers at once: the tab, the accounts and the count are exactly the ledger', async () => {
    const { owner, tenantId } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'TAB', name: 'Tab shop' })).body as { id: string };
    const sku = (await owner.post('/v1/skus', { code: 'BREAD', name: 'Bread', unit: 'piece', price: 100 })).body as { id: string };
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 100_000 }] });
    const tom = (await owner.post('/v1/parties', { kind: 'customer', name: 'Tab Tom' })).body as { id: string };
    // Customers whose balances do not move while the list is paged, some tied.
    const idle: string[] = [];
    for (let i = 0; i < 6; i += 1) {
      const customer = (await owner.post('/v1/parties', { kind: 'customer', name: `Idle ${i}` })).body as { id: string };
      idle.push(customer.id);
      const amount = [300, 300, 5_000, 1, 1, 70][i]!;
      const sale = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'credit', customer_id: customer.id, items: [{ sku_id: sku.id, quantity: 1, unit_price: amount }] });
      assert.equal(sale.status, 201, JSON.stringify(sale.body));
    }
    const sell = (method: 'credit' | 'cash', price: number) =>
      owner.post(
        '/v1/sales',
        { store_id: store.id, payment_method: method, ...(method === 'credit' ? { customer_id: tom.id } : {}), items: [{ sku_id: sku.id, quantity: 1, unit_price: price }] },
        { idempotencyKey: randomUUID() },
      );
    const voidSale = (id: string) => owner.post(`/v1/sales/${id}/void`, { reason: 'returned' }, { idempotencyKey: randomUUID() });
    const pay = (direction: 'in' | 'out', amount: number) =>
      owner.post('/v1/payments', { party_id: tom.id, store_id: store.id, method: 'cash', amount, direction }, { idempotencyKey: randomUUID() });

    // Given Tom's earlier credit sales (some voided below) and some cash sales
    const earlier = await Promise.all(Array.from({ length: 10 }, (_, i) => sell('credit', 1_000 + i)));
    for (const sale of earlier) assert.equal(sale.status, 201, JSON.stringify(sale.body));
    let owed = earlier.reduce((sum, sale) => sum + Number(sale.body.total), 0);

    // When, at once: more credit sales, voids of the earlier ones, Tom paying and refunded cash, cash sales, a count of today, and the list paged
    const work: Array<Promise<ApiResponse>> = [];
    for (let i = 0; i < 10; i += 1) {
      work.push(sell('credit', 200 + i));
      owed += 200 + i;
      work.push(voidSale(earlier[i]!.body.id));
      owed -= Number(earlier[i]!.body.total);
      work.push(pay('in', 50 + i));
      owed -= 50 + i;
      if (i % 2 === 0) {
        work.push(pay('out', 7));
        owed += 7;
      }
      work.push(sell('cash', 30));
    }
    const counting = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 15));
      return owner.post('/v1/settlements', { store_id: store.id, business_date: (await today()), declared_cash: 0 }, { idempotencyKey: randomUUID() });
    })();
    const paging = (async () => {
      const pages: string[][] = [];
      for (let round = 0; round < 3; round += 1) {
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const page: ApiResponse = await owner.get(`/v1/ledger/customers?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
          assert.equal(page.status, 200, JSON.stringify(page.body));
          for (const item of page.body.items as Array<{ party_id: string }>) seen.push(item.party_id);
          cursor = page.body.next_cursor as string | null;
        } while (cursor);
        pages.push(seen);
      }
      return pages;
    })();
    const [responses, count, walks] = await Promise.all([Promise.all(work), counting, paging]);
    for (const response of responses) assert.ok(response.status === 200 || response.status === 201, `${response.status} ${JSON.stringify(response.body)}`);
    assert.equal(count.status, 201, JSON.stringify(count.body));

    // Then Tom's tab is exactly his sales less voids, payments and refunds
    const listed = (await owner.get('/v1/ledger/customers?limit=500')).body.items as Array<{ party_id: string; outstanding: number; debit_total: number; credit_total: number }>;
    const tab = listed.find((row) => row.party_id === tom.id)!;
    assert.equal(tab.outstanding, owed);
    assert.equal(tab.debit_total - tab.credit_total, owed);
    // and every customer whose balance did not move was listed exactly once on every walk through the pages
    for (const walk of walks) {
      for (const id of idle) assert.equal(walk.filter((seen) => seen === id).length, 1, `customer ${id} in ${JSON.stringify(walk)}`);
    }
    // and every entry sums to zero, every account equals its postings, and the count equals its day's drawer postings
    const unbalanced = await t.admin.query(
      `SELECT e.id FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id WHERE e.tenant_id = $1 GROUP BY e.id HAVING sum(p.amount) <> 0`,
      [tenantId],
    );
    assert.deepEqual(unbalanced.rows, []);
    const drift = await t.admin.query(
      `SELECT a.key FROM accounts a LEFT JOIN postings p ON p.tenant_id = a.tenant_id AND p.account_id = a.id WHERE a.tenant_id = $1
       GROUP BY a.id, a.key, a.balance, a.debit_total, a.credit_total
       HAVING a.balance <> coalesce(sum(p.amount), 0) OR a.debit_total <> coalesce(sum(greatest(p.amount, 0)), 0) OR a.credit_total <> coalesce(sum(greatest(-p.amount, 0)), 0)`,
      [tenantId],
    );
    assert.deepEqual(drift.rows, []);
    const day = await t.admin.query<{ moved: string }>(
      `SELECT coalesce(sum(p.amount), 0)::bigint AS moved FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
       JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
       WHERE e.tenant_id = $1 AND e.store_id = $2 AND e.business_date = $3::date AND a.key = 'store/' || $2 || '/cash_drawer'`,
      [tenantId, store.id, count.body.business_date],
    );
    assert.equal(Number(count.body.expected_cash) - Number(count.body.float_amount), Number(day.rows[0]!.moved));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  async function today(): Promise<string> {
    return (await t.admin.query<{ d: string }>(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0]!.d;
  }
});
