import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { catchUpDailySales } from '../analytics/catchUpDailySales.js';
import { runCommand } from '../core/command.js';
import { givenSku, givenStock, givenStore, givenToken } from './testkit.js';

/**
 * Sales at their limits and under a mixed load the narrower race tests do not
 * combine: two API processes selling online, syncing offline batches (keys
 * sent again, the same key twice in one batch), selling workshop pieces,
 * voiding, receiving stock and moving the bulk threshold, all at once; and a
 * store's time zone changed while it sells. Each checks the rows left behind:
 * balances = ledger sums and never negative, receipt numbers 1..n per store,
 * one sale per key with its operation, audit event and key record, and no
 * integrity finding.
 */
describe('sales at their limits and under a mixed load on two processes', () => {
  let t: TestApp;
  let second: Awaited<ReturnType<typeof startSecondApi>>;

  before(async () => {
    t = await startTestApp();
    second = await startSecondApi(t);
  });
  after(async () => {
    await second.close();
    await t.close();
  });

  /** The same token on both processes. */
  const onBoth = (client: ApiClient) => [t.client(client.token!), second.client(client.token!)];

  /** Deterministic pseudo-random integers in [0, n). */
  function randomFrom(seed: number) {
    let state = seed;
    return (n: number) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return Math.floor((state / 2147483648) * n);
    };
  }

  /** Stock balance (null: no row) and the sum of its ledger, as bigints read exactly. */
  async function balanceAndLedger(tenantId: string, storeId: string, skuId: string): Promise<{ balance: number | null; ledger: number }> {
    const { rows } = await t.admin.query(
      `SELECT (SELECT quantity::text FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS balance,
              (SELECT coalesce(sum(quantity_change), 0)::text FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS ledger`,
      [tenantId, storeId, skuId],
    );
    return { balance: rows[0].balance === null ? null : Number(rows[0].balance), ledger: Number(rows[0].ledger) };
  }

  async function assertStoreConsistent(tenantId: string, storeId: string, skuIds: string[]) {
    const { rows } = await t.admin.query(
      `SELECT count(*)::int AS sales, coalesce(max(receipt_number), 0)::int AS highest, count(DISTINCT receipt_number)::int AS distinct_numbers,
              coalesce((SELECT last_number::int FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2), 0) AS counter
       FROM sales WHERE tenant_id = $1 AND store_id = $2`,
      [tenantId, storeId],
    );
    const n = rows[0].sales;
    assert.deepEqual(rows[0], { sales: n, highest: n, distinct_numbers: n, counter: n }, 'receipt numbers 1..n, the counter at n');
    for (const skuId of skuIds) {
      const { balance, ledger } = await balanceAndLedger(tenantId, storeId, skuId);
      assert.equal(balance ?? 0, ledger, 'balance = ledger sum');
      assert.ok((balance ?? 0) >= 0, 'stock never negative');
    }
  }

  it('200 lines of one SKU at the largest quantity and price 0, the largest price, one minor unit over it: 201, 201, 400; the void returns exactly what left', async () => {
    const { owner, tenantId } = await t.newTenant();
    const storeId = await givenStore(owner, 'MAX');
    const sku = await givenSku(owner, 'MAX', 'piece', 10);
    await givenStock(owner, storeId, Array.from({ length: 200 }, () => ({ sku_id: sku, quantity: 1_000_000_000_000 })));

    const items = Array.from({ length: 200 }, () => ({ sku_id: sku, quantity: 1_000_000_000_000, unit_price: 0 }));
    const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items }, { idempotencyKey: randomUUID() });
    assert.equal(sale.status, 201, JSON.stringify(sale.body).slice(0, 500));
    assert.equal(sale.body.total, 0);
    assert.deepEqual(await balanceAndLedger(tenantId, storeId, sku), { balance: 0, ledger: 0 });
    const ledgerRows = await t.admin.query(`SELECT quantity_change::text FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, sale.body.op_id]);
    assert.deepEqual(ledgerRows.rows, [{ quantity_change: '-200000000000000' }], 'one ledger row for the SKU, its lines summed');

    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'returned' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200, JSON.stringify(voided.body).slice(0, 500));
    const stock = await t.admin.query(`SELECT quantity::text FROM stock_balances WHERE tenant_id = $1 AND store_id = $2`, [tenantId, storeId]);
    assert.deepEqual(stock.rows, [{ quantity: '200000000000000' }]);

    const largest = await owner.post(
      '/v1/sales',
      { store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 9_000_000_000_000 }] },
      { idempotencyKey: randomUUID() },
    );
    assert.equal(largest.status, 201, JSON.stringify(largest.body));
    const over = await owner.post(
      '/v1/sales',
      { store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 9_000_000_000_000 }, { sku_id: sku, quantity: 1, unit_price: 1 }] },
      { idempotencyKey: randomUUID() },
    );
    assert.equal(over.status, 400, JSON.stringify(over.body));
    await assertStoreConsistent(tenantId, storeId, [sku]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('one key twice in one sync batch: the same sale is replayed, another sale under it is 422; one sale, stock taken once', async () => {
    const { owner, tenantId } = await t.newTenant();
    const storeId = await givenStore(owner, 'DUP');
    const sku = await givenSku(owner, 'DUP', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 10 }]);
    const sale = { idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 10 }] };
    const response = await owner.post('/v1/sync/sales', { sales: [sale, sale, { ...sale, items: [{ sku_id: sku, quantity: 2, unit_price: 10 }] }] });
    assert.equal(response.status, 200);
    assert.deepEqual(
      response.body.results.map((r: { status: number; replayed: boolean }) => [r.status, r.replayed]),
      [
        [201, false],
        [201, true],
        [422, false],
      ],
    );
    assert.equal(response.body.results[1].body.id, response.body.results[0].body.id);
    assert.deepEqual(await balanceAndLedger(tenantId, storeId, sku), { balance: 9, ledger: 9 });
    await assertStoreConsistent(tenantId, storeId, [sku]);
  });

  it('an offline sale of a SKU the store never stocked: kept with all of it short and no stock row touched; stock received later is untouched by its void', async () => {
    const { owner, tenantId } = await t.newTenant();
    const storeId = await givenStore(owner, 'NEVER');
    const sku = await givenSku(owner, 'NEVER', 'piece', 10);
    const response = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 3, unit_price: 10 }] }],
    });
    assert.equal(response.body.results[0].status, 201, JSON.stringify(response.body));
    const offline = response.body.results[0].body;
    assert.deepEqual(offline.items.map((item: { shortfall_quantity: number }) => item.shortfall_quantity), [3]);
    assert.deepEqual(await balanceAndLedger(tenantId, storeId, sku), { balance: null, ledger: 0 });

    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 2 }]);
    const online = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 3, unit_price: 10 }] }, { idempotencyKey: randomUUID() });
    assert.equal(online.status, 409, 'online sales still never oversell');
    const voided = await owner.post(`/v1/sales/${offline.id}/void`, { reason: 'x' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200);
    assert.deepEqual(await balanceAndLedger(tenantId, storeId, sku), { balance: 2, ledger: 2 });
    await assertStoreConsistent(tenantId, storeId, [sku]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two processes: online sales (some sent to both at once), offline batches (keys sent again), pieces, voids, receipts and threshold changes at once — the rows left behind are consistent', async () => {
    const { owner, tenantId } = await t.newTenant();
    const stores = [await givenStore(owner, 'M1'), await givenStore(owner, 'M2'), await givenStore(owner, 'M3')];
    const skus = [await givenSku(owner, 'M-A'), await givenSku(owner, 'M-B'), await givenSku(owner, 'M-C'), await givenSku(owner, 'M-D', 'kg')];
    for (const store of stores) await givenStock(owner, store, skus.map((sku) => ({ sku_id: sku, quantity: 60 })));
    const clothResponse = await owner.post('/v1/skus', { code: 'M-P', name: 'cloth', unit: 'metre', price: 10, tracks_pieces: true });
    assert.equal(clothResponse.status, 201, JSON.stringify(clothResponse.body));
    const cloth: string = clothResponse.body.id;
    const piecesOf = new Map<string, string[]>();
    for (const store of stores) {
      const received = await owner.post(
        '/v1/pieces',
        { store_id: store, sku_id: cloth, pieces: Array.from({ length: 30 }, (_, i) => ({ kind: 'roll', quantity: 1000 + i })) },
        { idempotencyKey: randomUUID() },
      );
      assert.equal(received.status, 201, JSON.stringify(received.body));
      piecesOf.set(store, received.body.pieces.map((piece: { id: string }) => piece.id));
    }
    const sellers = [...onBoth(await givenToken(t, owner, 'manager')), ...onBoth(await givenToken(t, owner, 'cashier'))];
    const owners = onBoth(owner);
    const rand = randomFrom(12345);

    const bodies = new Map<string, object>();
    const saleOfKey = new Map<string, string>();
    const saleIds: string[] = [];
    const answers: Record<string, number> = {};
    const counted = (label: string) => (answers[label] = (answers[label] ?? 0) + 1);
    const newSale = () => {
      const store = stores[rand(stores.length)]!;
      const items: object[] = Array.from({ length: 1 + rand(3) }, () => ({ sku_id: skus[rand(skus.length)]!, quantity: 1 + rand(6), unit_price: rand(4) * 50 }));
      if (rand(4) === 0) {
        const ids = piecesOf.get(store)!;
        const [first, next] = [ids[rand(ids.length)]!, ids[rand(ids.length)]!];
        items.push({ sku_id: cloth, piece_ids: first === next ? [first] : [first, next], unit_price: 20 });
      }
      return { store_id: store, payment_method: ['cash', 'card', 'mobile'][rand(3)]!, items };
    };
    const answered = (key: string, status: number, body: { id?: string }) => {
      counted(`sale ${status}`);
      if (status !== 201) return;
      const known = saleOfKey.get(key);
      assert.ok(known === undefined || known === body.id, `key ${key} answered with two sales`);
      if (known === undefined) {
        saleOfKey.set(key, body.id!);
        saleIds.push(body.id!);
      }
    };

    const worker = async (w: number) => {
      for (let i = 0; i < 40; i++) {
        const action = rand(10);
        const client = sellers[(w + i) % sellers.length]!;
        if (action < 4) {
          const key = randomUUID();
          const body = newSale();
          bodies.set(key, body);
          const to = rand(3) === 0 ? [client, sellers[(w + i + 1) % sellers.length]!] : [client];
          for (const response of await Promise.all(to.map((c) => c.post('/v1/sales', body, { idempotencyKey: key })))) answered(key, response.status, response.body);
        } else if (action < 6) {
          const batch = Array.from({ length: 1 + rand(6) }, () => {
            const known = [...bodies.keys()];
            if (known.length > 0 && rand(3) === 0) {
              const key = known[rand(known.length)]!;
              return { idempotency_key: key, ...bodies.get(key)! };
            }
            const key = randomUUID();
            const body = { ...newSale(), client_created_at: new Date(Date.now() - rand(3) * 3_600_000).toISOString() };
            bodies.set(key, body);
            return { idempotency_key: key, ...body };
          });
          if (rand(4) === 0) batch.push(batch[0]!);
          const response = await client.post('/v1/sync/sales', { sales: batch });
          assert.equal(response.status, 200, JSON.stringify(response.body));
          for (const result of response.body.results as Array<{ idempotency_key: string; status: number; body: { id?: string } }>) {
            answered(result.idempotency_key, result.status, result.body);
          }
        } else if (action < 8) {
          if (saleIds.length === 0) continue;
          const id = saleIds[rand(saleIds.length)]!;
          const voids = await Promise.all(owners.slice(0, 1 + rand(2)).map((c) => c.post(`/v1/sales/${id}/void`, { reason: 'mixed load' }, { idempotencyKey: randomUUID() })));
          for (const response of voids) counted(`void ${response.status}`);
        } else if (action < 9) {
          const store = stores[rand(stores.length)]!;
          const response = await owners[rand(2)]!.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: skus[rand(skus.length)]!, quantity: 1 + rand(5) }] });
          counted(`receipt ${response.status}`);
        } else {
          const response = await owners[rand(2)]!.patch('/v1/tenant/settings', { bulk_sale_threshold: 4 + rand(8) });
          counted(`settings ${response.status}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));

    // Every kind of work happened, and nothing failed unexpectedly (no 5xx).
    for (const label of ['sale 201', 'sale 403', 'sale 409', 'void 200', 'receipt 201', 'settings 200']) assert.ok((answers[label] ?? 0) > 0, `${label}: ${JSON.stringify(answers)}`);
    assert.deepEqual(Object.keys(answers).filter((label) => / 5\d\d$/.test(label)), [], JSON.stringify(answers));

    for (const store of stores) await assertStoreConsistent(tenantId, store, [...skus, cloth]);
    const { rows } = await t.admin.query(
      `SELECT s.id,
              (SELECT count(*) FROM operations o WHERE o.tenant_id = s.tenant_id AND o.id = s.op_id AND o.type = 'sale.create')::int AS operations,
              (SELECT count(*) FROM events e WHERE e.tenant_id = s.tenant_id AND e.op_id = s.op_id AND e.subject_type = 'sale')::int AS sale_events,
              (SELECT count(*) FROM idempotency_keys k WHERE k.tenant_id = s.tenant_id AND k.op_id = s.op_id)::int AS keys
       FROM sales s WHERE s.tenant_id = $1`,
      [tenantId],
    );
    assert.equal(rows.length, saleOfKey.size, 'one sale per key answered 201, none other');
    assert.deepEqual([...new Set(rows.map((row) => `${row.operations}/${row.sale_events}/${row.keys}`))], ['1/1/1'], 'each sale: its operation, its audit event, its key');
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a store's time zone changed five times while six tills on two processes sell online and offline (some at a total of 0): books, figures and stock stay consistent", async () => {
    const { owner, tenantId } = await t.newTenant();
    const storeId = await givenStore(owner, 'ZONE');
    const sku = await givenSku(owner, 'ZONE');
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 100_000 }]);
    const catchUp = async () => {
      const input = { tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `catch-up-${randomUUID()}`, fingerprint: randomUUID() };
      const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) }));
      assert.equal(outcome.status, 200, JSON.stringify(outcome.body));
    };
    const clients = onBoth(owner);
    let stop = false;
    let n = 0;
    const till = async (i: number) => {
      while (!stop) {
        n++;
        const body = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: n % 3 === 0 ? 0 : 10 }] };
        if (n % 4 === 0) {
          const queued = { idempotency_key: randomUUID(), ...body, client_created_at: new Date(Date.now() - (n % 30) * 3_600_000).toISOString() };
          const response = await clients[i % 2]!.post('/v1/sync/sales', { sales: [queued] });
          assert.equal(response.body.results[0].status, 201, JSON.stringify(response.body));
        } else {
          const response = await clients[i % 2]!.post('/v1/sales', body, { idempotencyKey: randomUUID() });
          assert.equal(response.status, 201, JSON.stringify(response.body));
        }
      }
    };
    const tills = Array.from({ length: 6 }, (_, i) => till(i));
    try {
      for (const zone of ['Pacific/Kiritimati', 'Pacific/Pago_Pago', 'Asia/Tokyo', 'America/New_York', 'UTC']) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        const changed = await clients[n % 2]!.patch(`/v1/stores/${storeId}`, { time_zone: zone }, { idempotencyKey: randomUUID() });
        assert.equal(changed.status, 200, JSON.stringify(changed.body));
        await catchUp();
      }
    } finally {
      stop = true;
      await Promise.all(tills);
    }
    await catchUp();
    await assertStoreConsistent(tenantId, storeId, [sku]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
