import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, givenToken, saleRowCounts } from './testkit.js';

/**
 * Races the other sales tests do not reach: sales that really run while a
 * void is in flight, and two API processes (each with its own pool, token
 * cache and group committer, as two instances behind a load balancer are)
 * selling, retrying and syncing against one database.
 */
describe('sales under races: a void among running sales, two API processes on one database', () => {
  let t: TestApp;
  let second: Awaited<ReturnType<typeof startSecondApi>>;
  let owner: ApiClient;
  let ownerToken: string;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId, token: ownerToken } = await t.newTenant());
    second = await startSecondApi(t);
  });
  after(async () => {
    await second.close();
    await t.close();
  });

  /** The same token on both processes. */
  const onBoth = (token: string) => [t.client(token), second.client(token)] as const;
  const saleBody = (storeId: string, skuId: string, quantity = 1) => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 10 }] });

  async function receipts(storeId: string) {
    const { rows } = await t.admin.query(
      `SELECT count(*)::int AS n, coalesce(min(receipt_number), 0)::int AS lo, coalesce(max(receipt_number), 0)::int AS hi, count(DISTINCT receipt_number)::int AS distinct_numbers
       FROM sales WHERE tenant_id = $1 AND store_id = $2`,
      [tenantId, storeId],
    );
    return rows[0];
  }

  it('a void while eight tills on two processes keep selling the sold-out SKU: its 20 units are sold again exactly once, numbered after it', async () => {
    // Given: 20 units, all sold by one sale.
    const storeId = await givenStore(owner, 'RACE-V');
    const sku = await givenSku(owner, 'RACE-V', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 20 }]);
    const big = await owner.post('/v1/sales', saleBody(storeId, sku, 20), { idempotencyKey: randomUUID() });
    assert.equal(big.status, 201);

    // When: eight tills (four per process) sell one unit at a time, before, during and after the void, until the void
    // has been answered and the shelf is empty again.
    let voidAnswered = false;
    const sold: Array<{ id: string; receipt: number }> = [];
    const refused: string[] = [];
    const till = async (client: ApiClient) => {
      for (;;) {
        const answeredBefore = voidAnswered;
        const response = await client.post('/v1/sales', saleBody(storeId, sku), { idempotencyKey: randomUUID() });
        if (response.status === 201) sold.push({ id: response.body.id, receipt: response.body.receipt_number });
        else {
          refused.push(`${response.status} ${response.body.code}`);
          if (answeredBefore) return;
        }
      }
    };
    const [first, other] = onBoth(ownerToken);
    const tills = [first, first, first, first, other, other, other, other].map(till);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const voided = await other.post(`/v1/sales/${big.body.id}/void`, { reason: 'race' }, { idempotencyKey: randomUUID() });
    voidAnswered = true;
    await Promise.all(tills);

    // Then: the void went through while sales were being refused, and exactly its 20 units were sold again.
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.ok(refused.length >= 8, 'the tills were running before the void');
    assert.deepEqual([...new Set(refused)], ['409 insufficient_stock']);
    assert.equal(sold.length, 20);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 0, ledger: 0 });
    // Every resale is a completed sale of one unit, numbered after the big one, and no number is missing or repeated.
    const { rows } = await t.admin.query(
      `SELECT count(*)::int AS sales, coalesce(sum(i.quantity), 0)::int AS units
       FROM sales s JOIN sale_items i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id
       WHERE s.tenant_id = $1 AND s.store_id = $2 AND s.status = 'completed' AND s.id = ANY($3)`,
      [tenantId, storeId, sold.map((sale) => sale.id)],
    );
    assert.deepEqual(rows[0], { sales: 20, units: 20 });
    assert.deepEqual(
      sold.map((sale) => sale.receipt).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => big.body.receipt_number + 1 + i),
    );
    assert.deepEqual(await receipts(storeId), { n: 21, lo: 1, hi: 21, distinct_numbers: 21 });
    // The voided sale kept its number and its stock came back through one ledger row.
    const voidRows = await t.admin.query(`SELECT quantity_change::int FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voided.body.voided_by_op]);
    assert.deepEqual(voidRows.rows, [{ quantity_change: 20 }]);
  });

  it('two API processes, 32 tills, 600 one-unit sales of the last 300 units: exactly 300 sold, stock 0, ledger = balance, receipts 1..300', async () => {
    const storeId = await givenStore(owner, 'RACE-2P');
    const sku = await givenSku(owner, 'RACE-2P', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 300 }]);
    const before = await saleRowCounts(t, tenantId);
    const [first, other] = onBoth(ownerToken);

    const attempts = Array.from({ length: 600 }, () => randomUUID());
    const answers = new Map<string, number>();
    const till = async (client: ApiClient) => {
      for (let key = attempts.pop(); key !== undefined; key = attempts.pop()) {
        const response = await client.post('/v1/sales', saleBody(storeId, sku), { idempotencyKey: key });
        const answer = `${response.status} ${response.body.code ?? ''}`.trim();
        answers.set(answer, (answers.get(answer) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 32 }, (_, i) => till(i % 2 === 0 ? first : other)));

    assert.deepEqual(Object.fromEntries(answers), { '201': 300, '409 insufficient_stock': 300 });
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 0, ledger: 0 });
    assert.deepEqual(await receipts(storeId), { n: 300, lo: 1, hi: 300, distinct_numbers: 300 });
    const after = await saleRowCounts(t, tenantId);
    // One sale, one line, one ledger row, one operation and one idempotency record per unit sold; refusals write nothing.
    for (const table of ['sales', 'sale_items', 'ledger', 'operations', 'keys'] as const) assert.equal(after[table]! as number, (before[table] as number) + 300, table);
    assert.equal(Number(after.receipt_numbers), Number(before.receipt_numbers) + 300);
  });

  it('one sale retried at once on both processes under one key: one sale, stock taken once, every answer names it', async () => {
    const storeId = await givenStore(owner, 'RACE-KEY');
    const sku = await givenSku(owner, 'RACE-KEY', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 50 }]);
    const [first, other] = onBoth(ownerToken);
    for (let round = 0; round < 5; round += 1) {
      const before = await saleRowCounts(t, tenantId);
      const key = randomUUID();
      const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? first : other).post('/v1/sales', saleBody(storeId, sku, 2), { idempotencyKey: key })));
      const created = responses.filter((response) => response.status === 201);
      assert.ok(created.length >= 1, JSON.stringify(responses.map((response) => response.status)));
      assert.ok(
        responses.every((response) => response.status === 201 || (response.status === 409 && response.body.code === 'idempotency_key_in_flight')),
        JSON.stringify(responses.map((response) => [response.status, response.body.code])),
      );
      assert.equal(new Set(created.map((response) => response.body.id)).size, 1, 'every 201 is the same sale');
      assert.equal(created.filter((response) => response.headers.get('idempotent-replayed') !== 'true').length, 1, 'exactly one answer is the original');
      const after = await saleRowCounts(t, tenantId);
      for (const table of ['sales', 'sale_items', 'ledger', 'operations', 'keys'] as const) assert.equal(after[table], (before[table] as number) + 1, `round ${round}: ${table}`);
    }
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 40, ledger: 40 });
    assert.deepEqual(await receipts(storeId), { n: 5, lo: 1, hi: 5, distinct_numbers: 5 });
  });

  it('one offline batch synced to both processes at once: each sale once, with its line, ledger row, operation and key; a third send replays all', async () => {
    const storeId = await givenStore(owner, 'RACE-SYNC');
    const sku = await givenSku(owner, 'RACE-SYNC', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 100 }]);
    const cashier = await givenToken(t, owner, 'cashier');
    const [first, other] = onBoth(cashier.token!);
    const batch = {
      sales: Array.from({ length: 12 }, (_, i) => ({ idempotency_key: randomUUID(), client_created_at: '2026-12-01T10:00:00.000Z', ...saleBody(storeId, sku, 1 + (i % 3)) })),
    };
    const units = batch.sales.reduce((sum, sale) => sum + sale.items[0]!.quantity, 0);
    const before = await saleRowCounts(t, tenantId);

    const responses = await Promise.all([first.post('/v1/sync/sales', batch), other.post('/v1/sync/sales', batch), first.post('/v1/sync/sales', batch)]);
    for (const response of responses) {
      assert.equal(response.status, 200, JSON.stringify(response.body));
      for (const result of response.body.results) assert.ok(result.status === 201 || (result.status === 409 && result.body.code === 'idempotency_key_in_flight'), JSON.stringify(result));
    }
    // A sale some answer left in flight is applied by sending the batch again: then every answer is a replay of one sale per item.
    const again = await other.post('/v1/sync/sales', batch);
    const ids = again.body.results.map((result: { status: number; body: { id: string } }) => {
      assert.equal(result.status, 201);
      return result.body.id;
    });
    assert.equal(new Set(ids).size, 12);
    for (const response of responses) {
      response.body.results.forEach((result: { status: number; body: { id: string } }, index: number) => {
        if (result.status === 201) assert.equal(result.body.id, ids[index], 'every 201 names the one sale of its item');
      });
    }
    const after = await saleRowCounts(t, tenantId);
    for (const table of ['sales', 'sale_items', 'ledger', 'operations', 'keys'] as const) assert.equal(after[table], (before[table] as number) + 12, table);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 100 - units, ledger: 100 - units });
    assert.deepEqual(await receipts(storeId), { n: 12, lo: 1, hi: 12, distinct_numbers: 12 });
    const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2 AND source = 'offline'`, [tenantId, storeId]);
    assert.equal(rows[0].n, 12);
  });

  it('a synced batch of only bad sales answers each with its own error and writes nothing at all; a malformed sale is refused on its own', async () => {
    const storeId = await givenStore(owner, 'RACE-BAD');
    const elsewhere = await givenStore(owner, 'RACE-BAD-2');
    const sku = await givenSku(owner, 'RACE-BAD', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 5 }]);
    const cashier = await givenToken(t, owner, 'cashier', [storeId]);
    const item = (overrides: Record<string, unknown>) => ({ idempotency_key: randomUUID(), client_created_at: '2026-12-01T10:00:00.000Z', ...saleBody(storeId, sku), ...overrides });
    const batch = {
      sales: [
        item({ items: [{ sku_id: '00000000-0000-4000-8000-000000000009', quantity: 1, unit_price: 10 }] }),
        item({ sale_type: 'bulk' }),
        item({ store_id: elsewhere }),
        item({ idempotency_key: `fulfilment-webhook:evt_${randomUUID()}` }),
      ],
    };
    const before = await saleRowCounts(t, tenantId);
    const response = await cashier.post('/v1/sync/sales', batch);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(
      response.body.results.map((result: { status: number; body: { code: string } }) => [result.status, result.body.code]),
      [
        [400, 'validation_failed'],
        [403, 'forbidden'],
        [404, 'not_found'],
        [400, 'validation_failed'],
      ],
    );
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    // A batch whose own shape is wrong (no sales, a sale without its key) is refused whole, before any of it is applied.
    for (const wrong of [{ sales: [] }, { sales: [item({}), { ...item({}), idempotency_key: undefined }] }, { sales: [item({})], extra: 1 }]) {
      const refused = await cashier.post('/v1/sync/sales', wrong);
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'validation_failed');
    }
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 5, ledger: 5 });
    // A malformed sale is refused on its own (400 at its fields, as if sent alone), and the good sale beside it is applied.
    const good = item({});
    const mixed = await cashier.post('/v1/sync/sales', {
      sales: [
        good,
        item({ items: [{ sku_id: sku, quantity: 0, unit_price: 10 }] }),
        item({ payment_method: 'cashh', surprise: true }),
        // text the database cannot store (a NUL) is refused at its field, for this sale only
        item({ client_created_at: '2026-12-01T10:00:00.000Z\u0000' }),
      ],
    });
    assert.equal(mixed.status, 200, JSON.stringify(mixed.body));
    const [applied, zero, typo, unstorable] = mixed.body.results;
    assert.deepEqual([unstorable.status, unstorable.body.code, unstorable.body.errors.map((error: { path: string }) => error.path)], [400, 'validation_failed', ['/body/sales/3/client_created_at']]);
    assert.equal(applied.status, 201, JSON.stringify(applied.body));
    assert.equal(applied.idempotency_key, good.idempotency_key);
    assert.deepEqual([zero.status, zero.body.code], [400, 'validation_failed']);
    assert.deepEqual(
      zero.body.errors.map((error: { path: string }) => error.path),
      ['/body/sales/1/items/0/quantity'],
    );
    assert.deepEqual([typo.status, typo.body.code], [400, 'validation_failed']);
    assert.deepEqual(
      [...new Set(typo.body.errors.map((error: { path: string }) => error.path))].sort(),
      ['/body/sales/2/payment_method', '/body/sales/2/surprise'],
      JSON.stringify(typo.body.errors),
    );
    const counts = await saleRowCounts(t, tenantId);
    assert.equal(Number(counts.sales), Number(before.sales) + 1);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 4, ledger: 4 });
    // The same batch again: the good sale replays, the bad ones are refused again, nothing new is written
    const again = await cashier.post('/v1/sync/sales', {
      sales: [good, item({ idempotency_key: zero.idempotency_key, items: [{ sku_id: sku, quantity: 0, unit_price: 10 }] })],
    });
    assert.deepEqual(
      again.body.results.map((result: { status: number; replayed: boolean }) => [result.status, result.replayed]),
      [
        [201, true],
        [400, false],
      ],
    );
    assert.deepEqual(await saleRowCounts(t, tenantId), counts);
    // Refused by the sale's rules rather than its schema (an unknown SKU, a credit sale without its customer):
    // the paths name its fields in the batch too, as the README says of every sale that is not valid.
    const ruled = await cashier.post('/v1/sync/sales', {
      sales: [
        item({ items: [{ sku_id: randomUUID(), quantity: 1, unit_price: 10 }] }),
        item({ items: [{ sku_id: sku, quantity: 1, unit_price: 10 }, { sku_id: randomUUID(), quantity: 1, unit_price: 10 }] }),
        item({ payment_method: 'credit' }),
      ],
    });
    assert.equal(ruled.status, 200, JSON.stringify(ruled.body));
    assert.deepEqual(
      ruled.body.results.map((result: { status: number; body: { errors?: Array<{ path: string }> } }) => [result.status, (result.body.errors ?? []).map((error) => error.path)]),
      [
        [400, ['/body/sales/0/items/0/sku_id']],
        [400, ['/body/sales/1/items/1/sku_id']],
        [400, ['/body/sales/2/customer_id']],
      ],
      JSON.stringify(ruled.body.results),
    );
    assert.deepEqual(await saleRowCounts(t, tenantId), counts);
  });

  it('a void of a short offline sale racing its re-sync, its key sent online and resales of the returned units, on two processes: one sale per key, one void returning only what it took, receipts gapless, no finding', async () => {
    // Given: 6 units in stock; a till synced an offline sale of 10 under key K: 6 left stock, 4 short.
    const storeId = await givenStore(owner, 'RACE-VS');
    const sku = await givenSku(owner, 'RACE-VS', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 6 }]);
    const cashier = await givenToken(t, owner, 'cashier', [storeId]);
    const manager = await givenToken(t, owner, 'manager', [storeId]);
    const key = randomUUID();
    const queued = { store_id: storeId, payment_method: 'cash', client_created_at: '2026-12-01T10:00:00.000Z', items: [{ sku_id: sku, quantity: 10, unit_price: 10 }] };
    const batch = { sales: [{ idempotency_key: key, ...queued }] };
    const synced = await cashier.post('/v1/sync/sales', batch);
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const sale = synced.body.results[0].body;
    assert.deepEqual(sale.items.map((item: { shortfall_quantity: number }) => item.shortfall_quantity), [4]);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 0, ledger: 0 });

    // When: on both processes at once, two voids (own keys), the batch re-sent twice, K sent online, and ten one-unit resales.
    const [tillA, tillB] = onBoth(cashier.token!);
    const [managerA, managerB] = onBoth(manager.token!);
    const [voidA, voidB, syncA, syncB, online, ...resales] = await Promise.all([
      managerA.post(`/v1/sales/${sale.id}/void`, { reason: 'returned' }, { idempotencyKey: randomUUID() }),
      managerB.post(`/v1/sales/${sale.id}/void`, { reason: 'returned' }, { idempotencyKey: randomUUID() }),
      tillA.post('/v1/sync/sales', batch),
      tillB.post('/v1/sync/sales', batch),
      tillA.post('/v1/sales', queued, { idempotencyKey: key }),
      ...Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? tillA : tillB).post('/v1/sales', saleBody(storeId, sku), { idempotencyKey: randomUUID() })),
    ]);

    // Then: both voids answer the one void; K names the one sale in every answer (or was in flight at that instant).
    assert.deepEqual([voidA.status, voidB.status], [200, 200], JSON.stringify([voidA.body, voidB.body]));
    assert.equal(voidA.body.voided_by_op, voidB.body.voided_by_op);
    assert.equal(voidA.body.receipt_number, sale.receipt_number);
    const answersForKey = [syncA.body.results[0], syncB.body.results[0], { status: online.status, body: online.body }];
    for (const answer of answersForKey) {
      assert.ok(answer.status === 201 || (answer.status === 409 && answer.body.code === 'idempotency_key_in_flight'), JSON.stringify(answer));
      if (answer.status === 201) assert.equal(answer.body.id, sale.id, 'K replays the synced sale, never sells again');
    }
    const { rows: keyed } = await t.admin.query(
      `SELECT count(*)::int AS records, count(DISTINCT s.id)::int AS sales FROM idempotency_keys k JOIN sales s ON s.tenant_id = k.tenant_id AND s.op_id = k.op_id
       WHERE k.tenant_id = $1 AND k.key = $2`,
      [tenantId, key],
    );
    assert.deepEqual(keyed[0], { records: 1, sales: 1 });
    // The void returned the 6 units the sale took (not the 4 it never took), through one ledger row, and reversed its money once.
    const { rows: voidRows } = await t.admin.query(`SELECT quantity_change::int FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voidA.body.voided_by_op]);
    assert.deepEqual(voidRows, [{ quantity_change: 6 }]);
    const { rows: entries } = await t.admin.query(
      `SELECT kind, count(*)::int AS n FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2 GROUP BY kind ORDER BY kind`,
      [tenantId, sale.id],
    );
    assert.deepEqual(entries, [{ kind: 'sale', n: 1 }, { kind: 'sale_void', n: 1 }]);
    // Resales took at most what came back, each refused one with 409 insufficient_stock; stock = ledger; receipts 1..n.
    const resold = resales.filter((response) => response.status === 201).length;
    assert.ok(resales.every((response) => response.status === 201 || (response.status === 409 && response.body.code === 'insufficient_stock')), JSON.stringify(resales.map((r) => r.body)));
    assert.ok(resold <= 6);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, sku), { balance: 6 - resold, ledger: 6 - resold });
    assert.deepEqual(await receipts(storeId), { n: 1 + resold, lo: 1, hi: 1 + resold, distinct_numbers: 1 + resold });
    // Sent once more when all is quiet, K still replays the sale (now as first answered: completed), and nothing else moved.
    const before = await saleRowCounts(t, tenantId);
    const again = await cashier.post('/v1/sync/sales', batch);
    assert.deepEqual([again.body.results[0].status, again.body.results[0].replayed, again.body.results[0].body.id], [201, true, sale.id]);
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
