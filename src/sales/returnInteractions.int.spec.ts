import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, saleRowCounts } from './testkit.js';

/**
 * Partial returns (not in the sale lane) against the parts around them: the
 * sale lane of two API processes selling the same SKUs, a void of the sale
 * in the lane, operations (read, revert), idempotency across sales, purchases
 * and the store's accounts.
 */
describe('partial returns with the parts around them', () => {
  let t: TestApp;
  let owner: ApiClient;
  let token: string;
  let tenantId: string;
  let storeId: string;
  let apple: string;
  let pear: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId, token } = await t.newTenant());
    storeId = await givenStore(owner, 'X1');
    // Created in this order so that a return naming pear first names them against their (store, SKU) lock order half the time.
    apple = await givenSku(owner, 'APPLE', 'piece', 50);
    pear = await givenSku(owner, 'PEAR', 'piece', 70);
    await givenStock(owner, storeId, [
      { sku_id: apple, quantity: 100_000 },
      { sku_id: pear, quantity: 100_000 },
    ]);
  });
  after(() => t.close());

  const sell = async (client: ApiClient, items: Array<{ sku_id: string; quantity: number }>) =>
    client.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: items.map((item) => ({ ...item, unit_price: item.sku_id === apple ? 50 : 70 })) }, { idempotencyKey: randomUUID() });
  const giveBack = (saleId: string, items: Array<{ sku_id: string; quantity: number }>, key = randomUUID()) =>
    owner.post(`/v1/sales/${saleId}/returns`, { items, reason: 'back' }, { idempotencyKey: key });

  it('returns and voids of sales race the sale lanes of two processes selling the same SKUs: no 5xx, stock and money exact, books clean', async () => {
    const second = await startSecondApi(t);
    try {
      const other = second.client(token);
      // Given 12 sales of both SKUs, to be partly returned (pear named first) and some voided
      const earlier = [];
      for (let i = 0; i < 12; i++) {
        const response = await sell(owner, [{ sku_id: apple, quantity: 4 }, { sku_id: pear, quantity: 4 }]);
        assert.equal(response.status, 201, JSON.stringify(response.body));
        earlier.push(response.body as { id: string });
      }
      const appleBefore = await balanceAndLedger(t, tenantId, storeId, apple);
      const pearBefore = await balanceAndLedger(t, tenantId, storeId, pear);

      // When 80 new sales of both SKUs (half through each process), a return of each earlier sale (pear first), then a second one
      // of each, and voids of every third earlier sale all run at once
      const sales = Array.from({ length: 80 }, (_, i) => sell(i % 2 === 0 ? owner : other, [{ sku_id: apple, quantity: 1 }, { sku_id: pear, quantity: 1 }]));
      const returns = earlier.flatMap((sale) => [
        giveBack(sale.id, [{ sku_id: pear, quantity: 1 }, { sku_id: apple, quantity: 2 }]),
        giveBack(sale.id, [{ sku_id: pear, quantity: 2 }, { sku_id: apple, quantity: 1 }]),
      ]);
      const voids = earlier.filter((_, i) => i % 3 === 0).map((sale, i) => (i % 2 === 0 ? owner : other).post(`/v1/sales/${sale.id}/void`, { reason: 'race' }, { idempotencyKey: randomUUID() }));
      const [saleAnswers, returnAnswers, voidAnswers] = await Promise.all([Promise.all(sales), Promise.all(returns), Promise.all(voids)]);

      // Then every sale and void went through, every return was made or refused as a return of a voided sale
      assert.deepEqual(saleAnswers.filter((r) => r.status !== 201).map((r) => [r.status, r.body]), []);
      assert.deepEqual(voidAnswers.filter((r) => r.status !== 200).map((r) => [r.status, r.body]), []);
      assert.deepEqual(returnAnswers.filter((r) => r.status !== 201 && !(r.status === 409 && r.body.code === 'invalid_transition')).map((r) => [r.status, r.body]), []);

      // And the stock is what the answers say: sold 80 of each, each 201 return gave its quantities back, each void what was left
      const { rows } = await t.admin.query(
        `SELECT coalesce(sum(ri.quantity) FILTER (WHERE ri.sku_id = $2), 0)::int AS apple_returned,
                coalesce(sum(ri.quantity) FILTER (WHERE ri.sku_id = $3), 0)::int AS pear_returned,
                (SELECT count(*) FROM sale_returns WHERE tenant_id = $1)::int AS returns
         FROM sale_return_items ri WHERE ri.tenant_id = $1`,
        [tenantId, apple, pear],
      );
      const made = returnAnswers.filter((r) => r.status === 201);
      assert.equal(rows[0].returns, made.length);
      const madeOf = (sku: string) => made.flatMap((r) => r.body.lines as Array<{ sku_id: string; quantity: number }>).filter((l) => l.sku_id === sku).reduce((sum, l) => sum + l.quantity, 0);
      assert.equal(rows[0].apple_returned, madeOf(apple));
      assert.equal(rows[0].pear_returned, madeOf(pear));
      // a voided sale brought back all of its 4 of each (returns + void), a sale not voided what its returns took
      const voidedIds = new Set(earlier.filter((_, i) => i % 3 === 0).map((sale) => sale.id));
      const returnedOfKept = (sku: string) =>
        made.filter((r) => !voidedIds.has(r.body.sale_id)).flatMap((r) => r.body.lines as Array<{ sku_id: string; quantity: number }>).filter((l) => l.sku_id === sku).reduce((sum, l) => sum + l.quantity, 0);
      assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, apple), {
        balance: appleBefore.balance - 80 + 4 * voidedIds.size + returnedOfKept(apple),
        ledger: appleBefore.ledger - 80 + 4 * voidedIds.size + returnedOfKept(apple),
      });
      assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, pear), {
        balance: pearBefore.balance - 80 + 4 * voidedIds.size + returnedOfKept(pear),
        ledger: pearBefore.ledger - 80 + 4 * voidedIds.size + returnedOfKept(pear),
      });
      assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    } finally {
      await second.close();
    }
  });

  it('a return as an operation: read at GET /v1/operations and /v1/ledger/operations; its revert is a clear 422 that writes nothing', async () => {
    const sale = (await sell(owner, [{ sku_id: apple, quantity: 3 }])).body;
    const returned = await giveBack(sale.id, [{ sku_id: apple, quantity: 1 }]);
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    const operation = await owner.get(`/v1/operations/${returned.body.op_id}`);
    assert.equal(operation.status, 200, JSON.stringify(operation.body));
    assert.equal(operation.body.type, 'sale.return');
    assert.equal(operation.body.store_id, storeId);
    const tables = new Set((operation.body.effects as Array<{ table: string }>).map((effect) => effect.table));
    for (const table of ['sale_returns', 'sale_return_items', 'stock_ledger', 'sales']) assert.ok(tables.has(table), `${table} in ${[...tables].join(', ')}`);
    const entries = await owner.get(`/v1/ledger/operations/${returned.body.op_id}`);
    assert.equal(entries.status, 200, JSON.stringify(entries.body));
    assert.deepEqual(
      entries.body.items.map((entry: { kind: string }) => entry.kind),
      ['sale_return'],
    );

    const rowsBefore = await saleRowCounts(t, tenantId);
    const revert = await owner.post(`/v1/operations/${returned.body.op_id}/revert`, {}, { idempotencyKey: randomUUID() });
    assert.equal(revert.status, 422, JSON.stringify(revert.body));
    assert.equal(revert.body.code, 'unprocessable');
    const { idempotency_keys: _k, ...after } = { ...(await saleRowCounts(t, tenantId)), idempotency_keys: 0 };
    assert.deepEqual(after, rowsBefore);
  });

  it('idempotency: a return key sent for another sale is 422 and writes nothing; after the sale is voided the key still replays the return', async () => {
    const first = (await sell(owner, [{ sku_id: apple, quantity: 3 }])).body;
    const second = (await sell(owner, [{ sku_id: apple, quantity: 3 }])).body;
    const key = randomUUID();
    const made = await giveBack(first.id, [{ sku_id: apple, quantity: 1 }], key);
    assert.equal(made.status, 201);
    const before = await saleRowCounts(t, tenantId);
    const elsewhere = await giveBack(second.id, [{ sku_id: apple, quantity: 1 }], key);
    assert.equal(elsewhere.status, 422, JSON.stringify(elsewhere.body));
    assert.equal(elsewhere.body.code, 'idempotency_key_reused');
    assert.deepEqual(await saleRowCounts(t, tenantId), before);

    assert.equal((await owner.post(`/v1/sales/${first.id}/void`, { reason: 'x' }, { idempotencyKey: randomUUID() })).status, 200);
    const replay = await giveBack(first.id, [{ sku_id: apple, quantity: 1 }], key);
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, made.body);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a purchase of a SKU, a sale of it and a partial return: six account kinds listed, the supplier owed the purchase, every money check clean', async () => {
    const supplier = await owner.post('/v1/parties', { kind: 'supplier', name: `Orchard ${randomUUID().slice(0, 6)}` });
    assert.equal(supplier.status, 201, JSON.stringify(supplier.body));
    const receipt = await owner.post(`/v1/stores/${storeId}/stock/receipts`, { supplier_id: supplier.body.id, items: [{ sku_id: pear, quantity: 10, unit_cost: 30 }] }, { idempotencyKey: randomUUID() });
    assert.equal(receipt.status, 201, JSON.stringify(receipt.body));
    const sale = (await sell(owner, [{ sku_id: pear, quantity: 5 }])).body;
    assert.equal((await giveBack(sale.id, [{ sku_id: pear, quantity: 2 }])).status, 201);
    const accounts = await owner.get(`/v1/stores/${storeId}/accounts`);
    assert.equal(accounts.status, 200, JSON.stringify(accounts.body));
    const kinds = accounts.body.items.map((account: { kind: string }) => account.kind);
    assert.deepEqual([...kinds].sort(), ['bank', 'card_clearing', 'cash_drawer', 'inventory', 'mobile_clearing', 'sales_revenue']);
    assert.equal(accounts.body.items.find((account: { kind: string }) => account.kind === 'inventory').balance, 300);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});

describe('partial returns racing the count of their day', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('returns sent while the day is counted: each refund is in exactly one count (that day, or the next day\'s booking), settlement_matches_ledger clean', async () => {
    const { owner, tenantId } = await t.newTenant();
    const store = await givenStore(owner, 'C1');
    const tea = await givenSku(owner, 'TEA', 'piece', 250);
    await givenStock(owner, store, [{ sku_id: tea, quantity: 1000 }]);
    const sales = [];
    for (let i = 0; i < 20; i++) {
      const sale = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: tea, quantity: 3, unit_price: 250 }] }, { idempotencyKey: randomUUID() });
      assert.equal(sale.status, 201);
      sales.push(sale.body as { id: string });
    }
    const today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d as string;
    // The count is sent once the first return is answered, while the others are still being written (each a batch of its own in the lane)
    const sent = sales.map((sale) => owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: tea, quantity: 1 }], reason: 'race' }, { idempotencyKey: randomUUID() }));
    const [count, ...returns] = await Promise.all([
      Promise.race(sent).then(() => owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 0 }, { idempotencyKey: randomUUID() })),
      ...sent,
    ]);
    assert.equal(count.status, 201, JSON.stringify(count.body));
    assert.deepEqual(returns.filter((r) => r.status !== 201).map((r) => [r.status, r.body]), []);
    // The count expected exactly the refunds booked on its day; the others are booked on the next day
    const { rows } = await t.admin.query(
      `SELECT e.business_date::text AS day, count(*)::int AS n, (-sum(p.amount))::int AS cash
       FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
       JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id AND a.kind = 'cash_drawer'
       WHERE e.tenant_id = $1 AND e.kind = 'sale_return' GROUP BY 1 ORDER BY 1`,
      [tenantId],
    );
    assert.equal(rows.reduce((sum, row) => sum + row.n, 0), 20);
    assert.equal(count.body.cash_returns, rows.find((row) => row.day === today)?.cash ?? 0);
    assert.ok(rows.every((row) => row.day >= today), JSON.stringify(rows));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
