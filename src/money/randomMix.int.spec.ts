import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

/**
 * 5,000 random operations — sales (cash, card, mobile, credit), payments in
 * and out, payment reverts (some racing each other on one payment), voids (some racing each other on the same sale) and transfers
 * (request → approve → receive, some received short) — fired concurrently over
 * HTTP by 32 clients. Then the rows must agree with each other: every entry
 * sums to zero, every account equals its postings AND what the business
 * records (sales, voids, payments) say it should hold, and stock per store
 * equals its ledger and what was received, sold, voided and transferred.
 */
const OPERATIONS = 5_000;
const CLIENTS = 32;
const INITIAL_STOCK = 2_000;

describe('a random concurrent mix of 5,000 sales, payments, voids and transfers', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  const stores: string[] = [];
  const skus: string[] = [];
  const customers: string[] = [];
  const suppliers: string[] = [];

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    for (let i = 0; i < 3; i++) stores.push((await owner.post('/v1/stores', { code: `R${i}`, name: `Random ${i}` })).body.id);
    for (let i = 0; i < 4; i++) skus.push((await owner.post('/v1/skus', { code: `RS${i}`, name: `Sku ${i}`, unit: 'piece', price: 100 + i })).body.id);
    for (const store of stores) {
      const receipt = await owner.post(`/v1/stores/${store}/stock/receipts`, { items: skus.map((sku_id) => ({ sku_id, quantity: INITIAL_STOCK })) });
      assert.equal(receipt.status, 201);
    }
    for (let i = 0; i < 8; i++) customers.push((await owner.post('/v1/parties', { kind: 'customer', name: `C${i}` })).body.id);
    for (let i = 0; i < 4; i++) suppliers.push((await owner.post('/v1/parties', { kind: 'supplier', name: `S${i}` })).body.id);
  });
  after(() => t.close());

  it('leaves every account equal to its postings and to the business records, and stock equal to its ledger', async () => {
    const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)]!;
    const saleIds: string[] = [];
    const paymentOps: string[] = [];
    const statuses = new Map<string, number>();
    const unexpected: string[] = [];
    const note = (label: string, response: ApiResponse, allowed: number[]) => {
      statuses.set(`${label} ${response.status}`, (statuses.get(`${label} ${response.status}`) ?? 0) + 1);
      if (!allowed.includes(response.status)) unexpected.push(`${label}: ${response.status} ${JSON.stringify(response.body).slice(0, 200)}`);
      return response;
    };

    const operations: Array<() => Promise<void>> = Array.from({ length: OPERATIONS }, () => {
      const roll = Math.random();
      if (roll < 0.5) {
        return async () => {
          const method = pick(['cash', 'cash', 'card', 'mobile', 'credit']);
          const lines = Array.from({ length: 1 + Math.floor(Math.random() * 2) }, () => ({ sku_id: pick(skus), quantity: 1 + Math.floor(Math.random() * 4), unit_price: 50 + Math.floor(Math.random() * 200) }));
          const body = { store_id: pick(stores), payment_method: method, items: lines, ...(method === 'credit' || Math.random() < 0.1 ? { customer_id: pick(customers) } : {}) };
          const response = note('sale', await owner.post('/v1/sales', body, { idempotencyKey: randomUUID() }), [201, 409]);
          if (response.status === 201) saleIds.push(response.body.id);
        };
      }
      if (roll < 0.7) {
        return async () => {
          // A payment recorded wrongly is reverted (some twice, racing each other or replaying).
          if (Math.random() < 0.25 && paymentOps.length > 0) {
            note('payment.revert', await owner.post(`/v1/operations/${pick(paymentOps.slice(-50))}/revert`, undefined, { idempotencyKey: randomUUID() }), [200]);
            return;
          }
          const toSupplier = Math.random() < 0.4;
          const body = {
            party_id: toSupplier ? pick(suppliers) : pick(customers),
            store_id: pick(stores),
            method: pick(['cash', 'card', 'mobile', 'bank']),
            amount: 1 + Math.floor(Math.random() * 5_000),
            ...(Math.random() < 0.15 ? { direction: toSupplier ? 'in' : 'out' } : {}),
          };
          const paid = note('payment', await owner.post('/v1/payments', body, { idempotencyKey: randomUUID() }), [201]);
          if (paid.status === 201) paymentOps.push(paid.body.op_id);
        };
      }
      if (roll < 0.85) {
        return async () => {
          if (saleIds.length === 0) return;
          const saleId = pick(saleIds.slice(-200));
          note('void', await owner.post(`/v1/sales/${saleId}/void`, { reason: 'random' }), [200]);
        };
      }
      return async () => {
        const [source, destination] = [...stores].sort(() => Math.random() - 0.5) as [string, string];
        const items = [{ sku_id: pick(skus), quantity: 1 + Math.floor(Math.random() * 20) }];
        const requested = note('transfer.request', await owner.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items }), [201]);
        if (requested.status !== 201) return;
        if (Math.random() < 0.1) {
          note('transfer.cancel', await owner.post(`/v1/transfers/${requested.body.id}/cancel`), [200]);
          return;
        }
        const approved = note('transfer.approve', await owner.post(`/v1/transfers/${requested.body.id}/approve`), [200, 409]);
        if (approved.status !== 200 || Math.random() < 0.2) return; // some stay in transit
        const short = Math.random() < 0.25;
        const receipt = short ? { items: [{ sku_id: items[0]!.sku_id, quantity_received: Math.floor(items[0]!.quantity / 2) }] } : {};
        note('transfer.receive', await owner.post(`/v1/transfers/${requested.body.id}/receive`, receipt), [200]);
      };
    });

    let next = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < operations.length) await operations[next++]!();
      }),
    );
    assert.deepEqual(unexpected, []);
    assert.ok(saleIds.length > 1_000, `sales: ${[...statuses].join(', ')}`);

    // Every posting set sums to zero, every account equals its postings (plus the registered integrity checks).
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    const unbalanced = await t.admin.query(
      `SELECT entry_id FROM postings WHERE tenant_id = $1 GROUP BY entry_id HAVING sum(amount) <> 0 OR count(*) < 2`,
      [tenantId],
    );
    assert.equal(unbalanced.rows.length, 0);
    const drift = await t.admin.query(
      `SELECT a.key FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) AS s FROM postings WHERE tenant_id = $1 GROUP BY account_id) p ON p.account_id = a.id
       WHERE a.tenant_id = $1 AND a.balance <> coalesce(p.s, 0)`,
      [tenantId],
    );
    assert.equal(drift.rows.length, 0);
    const total = await t.admin.query(`SELECT coalesce(sum(balance), 0)::bigint AS s FROM accounts WHERE tenant_id = $1`, [tenantId]);
    assert.equal(Number(total.rows[0].s), 0, 'the whole ledger sums to zero');

    // Each account holds what the business records say: sales (not voided), payments (not reverted).
    const expected = await t.admin.query<{ key: string; expected: string }>(
      `WITH moves AS (
         SELECT CASE s.payment_method WHEN 'cash' THEN 'store/' || s.store_id || '/cash_drawer'
                                      WHEN 'card' THEN 'store/' || s.store_id || '/card_clearing'
                                      WHEN 'mobile' THEN 'store/' || s.store_id || '/mobile_clearing'
                                      ELSE 'party/' || s.customer_id END AS key, s.total AS amount
         FROM sales s WHERE s.tenant_id = $1 AND s.status = 'completed'
         UNION ALL
         SELECT 'store/' || s.store_id || '/sales_revenue', -s.total FROM sales s WHERE s.tenant_id = $1 AND s.status = 'completed'
         UNION ALL
         SELECT 'store/' || p.store_id || '/' || CASE p.method WHEN 'cash' THEN 'cash_drawer' WHEN 'card' THEN 'card_clearing' WHEN 'mobile' THEN 'mobile_clearing' ELSE 'bank' END,
                CASE p.direction WHEN 'in' THEN p.amount ELSE -p.amount END
         FROM payments p WHERE p.tenant_id = $1 AND p.reverted_by_op IS NULL
         UNION ALL
         SELECT 'party/' || p.party_id, CASE p.direction WHEN 'in' THEN -p.amount ELSE p.amount END FROM payments p WHERE p.tenant_id = $1 AND p.reverted_by_op IS NULL
       )
       SELECT key, sum(amount)::text AS expected FROM moves GROUP BY key`,
      [tenantId],
    );
    const accounts = new Map(
      (await t.admin.query<{ key: string; balance: string }>(`SELECT key, balance::text FROM accounts WHERE tenant_id = $1`, [tenantId])).rows.map((r) => [r.key, Number(r.balance)]),
    );
    const mismatched = expected.rows.filter((row) => (accounts.get(row.key) ?? 0) !== Number(row.expected)).map((row) => `${row.key}: ${accounts.get(row.key)} ≠ ${row.expected}`);
    const extra = [...accounts].filter(([key, value]) => value !== 0 && !expected.rows.some((row) => row.key === key)).map(([key]) => key);
    assert.deepEqual(mismatched, []);
    assert.deepEqual(extra, []);

    // Stock per store equals its ledger, and what was received, sold, voided and transferred.
    const stockDrift = await t.admin.query(
      `SELECT b.store_id, b.sku_id FROM stock_balances b
       WHERE b.tenant_id = $1 AND b.quantity <> (SELECT coalesce(sum(l.quantity_change), 0) FROM stock_ledger l
                                                 WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id)`,
      [tenantId],
    );
    assert.equal(stockDrift.rows.length, 0);
    const stock = await t.admin.query(
      `SELECT st.id AS store_id, sk.id AS sku_id,
              coalesce((SELECT quantity FROM stock_balances b WHERE b.tenant_id = $1 AND b.store_id = st.id AND b.sku_id = sk.id), 0)::bigint AS balance,
              ($2::bigint
               - coalesce((SELECT sum(i.quantity - i.shortfall_quantity) FROM sales s JOIN sale_items i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id
                           WHERE s.tenant_id = $1 AND s.store_id = st.id AND i.sku_id = sk.id AND s.status = 'completed'), 0)
               - coalesce((SELECT sum(ti.quantity) FROM stock_transfers tr JOIN stock_transfer_items ti ON ti.tenant_id = tr.tenant_id AND ti.transfer_id = tr.id
                           WHERE tr.tenant_id = $1 AND tr.source_store_id = st.id AND ti.sku_id = sk.id AND tr.status IN ('approved', 'received')), 0)
               + coalesce((SELECT sum(ti.quantity_received) FROM stock_transfers tr JOIN stock_transfer_items ti ON ti.tenant_id = tr.tenant_id AND ti.transfer_id = tr.id
                           WHERE tr.tenant_id = $1 AND tr.destination_store_id = st.id AND ti.sku_id = sk.id AND tr.status = 'received'), 0))::bigint AS expected
       FROM stores st CROSS JOIN skus sk WHERE st.tenant_id = $1 AND sk.tenant_id = $1`,
      [tenantId, INITIAL_STOCK],
    );
    for (const row of stock.rows) assert.equal(Number(row.balance), Number(row.expected), `store ${row.store_id} sku ${row.sku_id}`);
    assert.ok([...statuses.keys()].some((key) => key === 'void 200'));
    assert.ok([...statuses.keys()].some((key) => key === 'payment.revert 200'));
    // Every reverted payment has its one reversal, by the operation it names.
    const reversals = await t.admin.query(
      `SELECT p.id FROM payments p
       WHERE p.tenant_id = $1 AND (SELECT count(*) FROM journal_entries e WHERE e.tenant_id = p.tenant_id AND e.subject_id = p.id AND e.kind = 'payment_revert'
                                                                         AND e.op_id = p.reverted_by_op) <> CASE WHEN p.reverted_by_op IS NULL THEN 0 ELSE 1 END`,
      [tenantId],
    );
    assert.deepEqual(reversals.rows, []);
    assert.ok([...statuses.keys()].some((key) => key === 'transfer.receive 200'));
  });
});
