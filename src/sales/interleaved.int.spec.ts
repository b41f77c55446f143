import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, givenToken, saleRowCounts } from './testkit.js';

/**
 * Mixes the other sales tests keep apart, checked by the rows they leave:
 * offline sync and online sales of one store interleaved on two API
 * processes (a new store, so its first receipt numbers race too), the bulk
 * threshold reached only by summing lines of a synced sale, and the stock
 * ledger paged while sales are being written.
 */
describe('sales interleaved: sync and online on two processes, bulk through sync, ledger pages under writes', () => {
  let t: TestApp;
  let second: Awaited<ReturnType<typeof startSecondApi>>;
  let owner: ApiClient;
  let tenantId: string;
  let cashierToken: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    second = await startSecondApi(t);
    cashierToken = (await givenToken(t, owner, 'cashier')).token!;
  });
  after(async () => {
    await second.close();
    await t.close();
  });

  const line = (skuId: string, quantity: number) => ({ sku_id: skuId, quantity, unit_price: 10 });

  async function receiptNumbers(storeId: string): Promise<number[]> {
    const { rows } = await t.admin.query(`SELECT receipt_number FROM sales WHERE tenant_id = $1 AND store_id = $2 ORDER BY receipt_number`, [tenantId, storeId]);
    return rows.map((row) => Number(row.receipt_number));
  }

  it("a new store's first sales: online on one process, an offline batch on the other, at once — online never oversold, every offline sale kept, receipts 1..n", async () => {
    // Given: a store that has sold nothing yet (no receipt counter), 30 units of one SKU
    const storeId = await givenStore(owner, 'MIX1');
    const skuId = await givenSku(owner, 'MIX1-A');
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 30 }]);
    const onFirst = t.client(cashierToken);
    const onSecond = second.client(cashierToken);

    // When: 40 one-unit online sales on process 1 and a batch of 20 one-unit offline sales on process 2, at the same time
    const online = Array.from({ length: 40 }, () => onFirst.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [line(skuId, 1)] }));
    const batch = Array.from({ length: 20 }, () => ({ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [line(skuId, 1)] }));
    const synced = onSecond.post('/v1/sync/sales', { sales: batch });
    const [onlineAnswers, syncAnswer] = await Promise.all([Promise.all(online), synced]);

    // Then: every offline sale is recorded; online sales took only what was there
    assert.equal(syncAnswer.status, 200, JSON.stringify(syncAnswer.body));
    const results = syncAnswer.body.results as Array<{ status: number; body: { items: Array<{ quantity: number; shortfall_quantity: number }> } }>;
    assert.deepEqual(results.map((result) => result.status), batch.map(() => 201));
    for (const answer of onlineAnswers) assert.ok(answer.status === 201 || (answer.status === 409 && answer.body.code === 'insufficient_stock'), JSON.stringify(answer.body));
    const onlineSold = onlineAnswers.filter((answer) => answer.status === 201).length;
    const offlineTaken = results.reduce((sum, result) => sum + result.body.items[0]!.quantity - result.body.items[0]!.shortfall_quantity, 0);
    const offlineShort = results.reduce((sum, result) => sum + result.body.items[0]!.shortfall_quantity, 0);
    assert.equal(offlineTaken + offlineShort, 20);
    // nothing was left on the shelf while an online sale was refused, and nothing was sold twice
    assert.equal(onlineSold + offlineTaken, 30);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, skuId), { balance: 0, ledger: 0 });
    // the ledger took exactly what the answers say, one row per sale that took stock
    const { rows: ledger } = await t.admin.query(
      `SELECT count(*)::int AS rows, coalesce(sum(-quantity_change), 0)::int AS taken FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND kind = 'sale'`,
      [tenantId, storeId, skuId],
    );
    assert.deepEqual(ledger[0], { rows: 30, taken: 30 });
    // receipts 1..n over both processes and both kinds of sale, counter at n
    const numbers = await receiptNumbers(storeId);
    assert.deepEqual(numbers, Array.from({ length: onlineSold + 20 }, (_, index) => index + 1));
    const counter = await t.admin.query(`SELECT last_number FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2`, [tenantId, storeId]);
    assert.equal(Number(counter.rows[0].last_number), onlineSold + 20);
    // one review item per offline sale that lacked stock, naming its shortfall
    const reviews = await t.admin.query(
      `SELECT detail FROM review_items r JOIN sales s ON s.tenant_id = r.tenant_id AND s.id::text = r.subject_id
       WHERE r.tenant_id = $1 AND r.kind = 'offline_sale_shortage' AND s.store_id = $2`,
      [tenantId, storeId],
    );
    assert.equal(reviews.rows.length, offlineShort);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the bulk threshold reached only by summing two lines of a synced sale, ids in capitals: 403 for a cashier, nothing written; a manager may', async () => {
    const storeId = await givenStore(owner, 'BULK1');
    const skuId = await givenSku(owner, 'BULK1-A');
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 100 }]);
    const set = await owner.patch('/v1/tenant/settings', { bulk_sale_threshold: 10 });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    try {
      const cashier = t.client(cashierToken);
      const sale = {
        idempotency_key: randomUUID(),
        store_id: storeId.toUpperCase(),
        payment_method: 'cash',
        sale_type: 'regular',
        items: [line(skuId.toUpperCase(), 6), line(skuId, 4)],
      };
      const before = await saleRowCounts(t, tenantId);
      const refused = await cashier.post('/v1/sync/sales', { sales: [sale, { ...sale, idempotency_key: randomUUID(), items: [line(skuId, 9)] }] });
      assert.equal(refused.status, 200);
      assert.deepEqual(refused.body.results.map((result: { status: number }) => result.status), [403, 201]);
      assert.equal(refused.body.results[0].body.code, 'forbidden');
      // only the 9-unit sale was written
      const afterRefusal = await saleRowCounts(t, tenantId);
      assert.equal(Number(afterRefusal.sales) - Number(before.sales), 1);
      assert.equal(Number(before.stock) - Number(afterRefusal.stock), 9);
      assert.equal(Number(afterRefusal.keys) - Number(before.keys), 1);
      assert.deepEqual(await receiptNumbers(storeId), [1]);

      // the same sale from a manager (sales.bulk) is recorded as bulk, numbered next
      const manager = await givenToken(t, owner, 'manager');
      const allowed = await manager.post('/v1/sync/sales', { sales: [{ ...sale, idempotency_key: randomUUID() }] });
      assert.equal(allowed.body.results[0].status, 201, JSON.stringify(allowed.body.results[0]));
      assert.equal(allowed.body.results[0].body.sale_type, 'bulk');
      assert.equal(allowed.body.results[0].body.receipt_number, 2);
      assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, skuId), { balance: 81, ledger: 81 });
    } finally {
      await owner.patch('/v1/tenant/settings', { bulk_sale_threshold: null });
    }
  });

  it('the stock ledger paged newest first while 16 tills on two processes sell the SKU: each walk lists every earlier row exactly once, in order', async () => {
    const storeId = await givenStore(owner, 'PAGE1');
    const skuId = await givenSku(owner, 'PAGE1-A');
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 100_000 }]);
    const tills = [t.client(cashierToken), second.client(cashierToken)];
    let selling = true;
    let sold = 0;
    const sellers = Array.from({ length: 16 }, async (_, index) => {
      while (selling) {
        const answer = await tills[index % 2]!.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [line(skuId, 1)] });
        assert.equal(answer.status, 201, JSON.stringify(answer.body));
        sold++;
      }
    });
    try {
      for (let walk = 0; walk < 6; walk++) {
        // wait for some sales between walks (no timing: a count)
        const target = sold + 20;
        while (sold < target) await new Promise((resolve) => setImmediate(resolve));
        const seen: Array<{ id: number; quantity_change: number; quantity_after: number }> = [];
        let cursor: string | null = null;
        do {
          const page: { status: number; body: { items: typeof seen; next_cursor: string | null } } = await owner.get(
            `/v1/stores/${storeId}/stock/${skuId}/ledger?limit=7${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`,
          );
          assert.equal(page.status, 200, JSON.stringify(page.body));
          seen.push(...page.body.items);
          cursor = page.body.next_cursor;
        } while (cursor !== null);
        // Then: exactly the rows at or below the first one seen, newest first, none missing or repeated
        const { rows } = await t.admin.query(
          `SELECT id FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND id <= $4 ORDER BY id DESC`,
          [tenantId, storeId, skuId, seen[0]!.id],
        );
        assert.deepEqual(seen.map((row) => Number(row.id)), rows.map((row) => Number(row.id)), `walk ${walk}`);
        // and each row's quantity_after follows from the one below it
        for (let index = 0; index + 1 < seen.length; index++) {
          assert.equal(seen[index]!.quantity_after, seen[index + 1]!.quantity_after + seen[index]!.quantity_change, `walk ${walk}, row ${seen[index]!.id}`);
        }
      }
    } finally {
      selling = false;
      await Promise.all(sellers);
    }
    const { balance, ledger } = await balanceAndLedger(t, tenantId, storeId, skuId);
    assert.equal(balance, ledger);
    assert.equal(balance, 100_000 - sold);
    assert.deepEqual(await receiptNumbers(storeId), Array.from({ length: sold }, (_, index) => index + 1));
  });
});
