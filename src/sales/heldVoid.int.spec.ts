import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { SALE_LOCK_WAIT_MS } from './groupCommit.js';
import { assertGaplessReceipts, balanceAndLedger, givenSku, givenStock, givenStore, holdLocked, LANE_ANSWER_BOUND_MS, returnRowCounts, saleMoney } from './testkit.js';

/**
 * A void or a partial return runs in its tenant's sale lane as a batch of its
 * own. One that meets a row held locked from outside (a psql session, a stuck
 * transaction) — a stock balance it gives back to, a journal account its
 * reversing entry posts to — waits the lane's lock wait once (503); the row is
 * then remembered for the tenant as the sales' runs remember it, and later
 * voids and returns needing it are answered 503 at once, found held without
 * waiting, while the tenant's other sales keep committing. (Before: every such
 * void or return waited the lock wait again, 2 s each, and the tenant's sales
 * queued behind it.)
 */
describe('a void or a partial return that meets a held row does not make the lane wait for it again', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeA: string;
  let storeB: string;
  let held: string;
  let other: string;
  const STOCK = 1_000;
  const PRICE = 10;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeA = await givenStore(owner, 'HV-A');
    storeB = await givenStore(owner, 'HV-B');
    held = await givenSku(owner, 'HV-X', 'piece', PRICE);
    other = await givenSku(owner, 'HV-Y', 'piece', PRICE);
    for (const store of [storeA, storeB]) await givenStock(owner, store, [held, other].map((sku_id) => ({ sku_id, quantity: STOCK })));
  });
  after(() => t.close());

  type Body = { store_id: string; payment_method: 'cash'; items: Array<{ sku_id: string; quantity: number; unit_price: number }> };
  const saleOf = (storeId: string, skuId: string, quantity = 1): Body => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: PRICE }] });

  interface Sent {
    key: string;
    answer: ApiResponse;
    ms: number;
  }
  const timed = async (key: string, call: () => Promise<ApiResponse>): Promise<Sent> => {
    const started = performance.now();
    const answer = await call();
    return { key, answer, ms: performance.now() - started };
  };
  const sell = (body: Body, key: string = randomUUID()) => timed(key, () => owner.post('/v1/sales', body, { idempotencyKey: key }));
  const voidOf = (saleId: string, key: string) => timed(key, () => owner.post(`/v1/sales/${saleId}/void`, { reason: 'held row' }, { idempotencyKey: key }));
  const returnOf = (saleId: string, skuId: string, key: string) =>
    timed(key, () => owner.post(`/v1/sales/${saleId}/returns`, { items: [{ sku_id: skuId, quantity: 1 }], reason: 'held row' }, { idempotencyKey: key }));

  /** A sale of 3 made now (to void or return part of later). */
  const sold = async (storeId: string, skuId: string): Promise<string> => {
    const sent = await sell(saleOf(storeId, skuId, 3));
    assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
    return sent.answer.body.id;
  };

  /** storekeep_database_wait_refusals_total{kind}, as the API's /metrics serves it. */
  const metric = async (name: string) => {
    const text = (await owner.get('/metrics')).body as string;
    const line = text.split('\n').find((each) => each.startsWith(`${name} `) || each.startsWith(`${name}{`));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };
  const refusals = (kind: 'row_held' | 'lock_timeout') => metric(`storekeep_database_wait_refusals_total{kind="${kind}"}`);

  const assertUnavailable = (sent: Sent, what: string) => {
    assert.equal(sent.answer.status, 503, `${what}: ${JSON.stringify(sent.answer.body)}`);
    assert.match(String(sent.answer.headers.get('content-type')), /^application\/problem\+json/);
    assert.equal(sent.answer.body.code, 'service_unavailable');
    assert.match(sent.answer.body.detail, /nothing was written/);
    assert.ok(Number(sent.answer.headers.get('retry-after')) >= 1, `Retry-After: ${sent.answer.headers.get('retry-after')}`);
  };

  const statusOf = async (saleId: string) => (await t.admin.query(`SELECT status FROM sales WHERE tenant_id = $1 AND id = $2`, [tenantId, saleId])).rows[0].status;
  const entriesOf = async (saleId: string) =>
    (
      await t.admin.query(
        `SELECT kind FROM journal_entries WHERE tenant_id = $1 AND (subject_id = $2 OR subject_id IN (SELECT id FROM sale_returns WHERE tenant_id = $1 AND sale_id = $2)) ORDER BY kind`,
        [tenantId, saleId],
      )
    ).rows.map((row) => row.kind);

  /** Balances = ledgers, receipts gapless, account balances = their postings, no integrity finding. */
  const assertConsistent = async () => {
    for (const store of [storeA, storeB]) {
      for (const sku of [held, other]) {
        const { balance, ledger } = await balanceAndLedger(t, tenantId, store, sku);
        assert.equal(balance, ledger, `balance = ledger sum for ${store}/${sku}`);
      }
    }
    await assertGaplessReceipts(t, tenantId);
    const { rows } = await t.admin.query(
      `SELECT a.key, a.balance::bigint AS balance, coalesce((SELECT sum(p.amount) FROM postings p WHERE p.tenant_id = a.tenant_id AND p.account_id = a.id), 0)::bigint AS posted
       FROM accounts a WHERE a.tenant_id = $1`,
      [tenantId],
    );
    for (const row of rows) assert.equal(row.balance, row.posted, `account ${row.key}: balance = its postings`);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  };

  it("a store's sales_revenue held: the first void waits one lock wait, later voids and returns of that store are 503 at once while the other store's sales commit; released, the same keys void and return once", async () => {
    // Given: sales of store A to void and to take back part of, while its revenue account is held.
    const [first, second, third] = [await sold(storeA, other), await sold(storeA, other), await sold(storeA, other)];
    const before = await returnRowCounts(t, tenantId);
    const timeoutsBefore = await refusals('lock_timeout');
    const heldBefore = await refusals('row_held');
    const hold = await holdLocked(t, `SELECT 1 FROM accounts WHERE tenant_id = $1 AND key = $2 FOR UPDATE`, [tenantId, `store/${storeA}/sales_revenue`], 'store A sales_revenue');
    const [firstKey, secondKey, thirdKey] = [randomUUID(), randomUUID(), randomUUID()];
    let firstVoid: Sent;
    let afterFirst: { timeouts: number; held: number };
    let later: Sent[];
    let sales: Sent[];
    let during: Awaited<ReturnType<typeof returnRowCounts>>;
    try {
      // When: the first void meets the held account (sales of store B right behind it)…
      const voiding = voidOf(first, firstKey);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const behind = Promise.all(Array.from({ length: 4 }, () => sell(saleOf(storeB, other))));
      firstVoid = await voiding;
      sales = await behind;
      afterFirst = { timeouts: (await refusals('lock_timeout')) - timeoutsBefore, held: (await refusals('row_held')) - heldBefore };
      // …then, the lane knowing it held, another void, a return, and the first void again, with store B selling
      // all along (concurrently).
      const selling = Promise.all(Array.from({ length: 6 }, () => sell(saleOf(storeB, held))));
      later = [await voidOf(second, secondKey), await returnOf(third, other, thirdKey), await voidOf(first, firstKey)];
      sales = [...sales, ...(await selling), ...(await Promise.all(Array.from({ length: 3 }, () => sell(saleOf(storeB, other)))))];
      during = await returnRowCounts(t, tenantId);
    } finally {
      await hold.release();
    }

    // Then: the first void waited the lane's lock wait once and was refused (a lock timeout)…
    assertUnavailable(firstVoid, 'the first void');
    assert.ok(firstVoid.ms >= SALE_LOCK_WAIT_MS - 100 && firstVoid.ms < LANE_ANSWER_BOUND_MS, `the first void answered in ${Math.round(firstVoid.ms)} ms`);
    assert.deepEqual(afterFirst, { timeouts: 1, held: 0 }, 'the first void: one lock wait, timed out');
    // …and the later ones waited for nothing: refused as a row held elsewhere, no lock wait of their own.
    for (const sent of later) {
      assertUnavailable(sent, 'a later void or return');
      assert.ok(sent.ms < SALE_LOCK_WAIT_MS, `a later void or return answered in ${Math.round(sent.ms)} ms, not under the lock wait ${SALE_LOCK_WAIT_MS} ms`);
    }
    assert.equal((await refusals('lock_timeout')) - timeoutsBefore, 1, 'no later void or return waited the lock wait');
    assert.equal((await refusals('row_held')) - heldBefore, later.length, 'each later one refused at once as a row held elsewhere');
    // The other store's sales were written, within the bound.
    for (const sent of sales) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of store B answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    // Nothing of the refused voids and return was written: only store B's sales.
    assert.deepEqual(
      { sales: during.sales, operations: during.operations, keys: during.keys, returns: during.returns, entries: during.entries, ledger: during.ledger },
      {
        sales: Number(before.sales) + sales.length,
        operations: Number(before.operations) + sales.length,
        keys: Number(before.keys) + sales.length,
        returns: before.returns,
        entries: Number(before.entries) + sales.length,
        ledger: Number(before.ledger) + sales.length,
      },
    );
    for (const saleId of [first, second, third]) {
      assert.equal(await statusOf(saleId), 'completed');
      assert.deepEqual(await entriesOf(saleId), ['sale']);
    }

    // Released: the same keys void and take back once; the stock is back and the money reversed.
    const stockBefore = (await balanceAndLedger(t, tenantId, storeA, other)).balance;
    const again = [await voidOf(first, firstKey), await voidOf(second, secondKey), await returnOf(third, other, thirdKey)];
    assert.deepEqual(again.map((sent) => sent.answer.status), [200, 200, 201], JSON.stringify(again.map((sent) => sent.answer.body)));
    const replayed = [await voidOf(first, firstKey), await returnOf(third, other, thirdKey)];
    assert.deepEqual(replayed.map((sent) => sent.answer.headers.get('idempotent-replayed')), ['true', 'true']);
    assert.equal((await balanceAndLedger(t, tenantId, storeA, other)).balance, stockBefore + 3 + 3 + 1, 'two voids of 3 and a return of 1 put back');
    for (const saleId of [first, second]) {
      assert.equal(await statusOf(saleId), 'voided');
      assert.deepEqual(await entriesOf(saleId), ['sale', 'sale_void']);
      assert.deepEqual(await saleMoney(t, tenantId, storeA, saleId), { cash_drawer: 0, sales_revenue: 0 });
    }
    assert.deepEqual(await entriesOf(third), ['sale', 'sale_return']);
    assert.deepEqual(await saleMoney(t, tenantId, storeA, third), { cash_drawer: 2 * PRICE, sales_revenue: -2 * PRICE });
    await assertConsistent();
  });

  it("a stock balance held: the return that meets it waits once, then a void, a return and the sales of that balance are 503 at once while the store's other SKU and the other store sell; released, each goes through once", async () => {
    // Given: sales of the balance about to be held.
    const [returned, voided, returnedAgain] = [await sold(storeA, held), await sold(storeA, held), await sold(storeA, held)];
    const before = await returnRowCounts(t, tenantId);
    const stockBefore = (await balanceAndLedger(t, tenantId, storeA, held)).balance;
    const timeoutsBefore = await refusals('lock_timeout');
    const heldBefore = await refusals('row_held');
    const hold = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeA, held], 'the balance');
    const [returnKey, voidKey, againKey] = [randomUUID(), randomUUID(), randomUUID()];
    const heldSaleKey = randomUUID();
    let firstReturn: Sent;
    let later: Sent[];
    let heldSale: Sent;
    let sales: Sent[];
    let during: Awaited<ReturnType<typeof returnRowCounts>>;
    try {
      // When: the first return meets the held balance…
      firstReturn = await returnOf(returned, held, returnKey);
      // …then a void and another return of it, a sale of it, and sales of everything else, all at once.
      const selling = Promise.all([saleOf(storeA, other), saleOf(storeB, held), saleOf(storeB, other), saleOf(storeA, other), saleOf(storeB, held)].map((body) => sell(body)));
      const heldSelling = sell(saleOf(storeA, held), heldSaleKey);
      later = await Promise.all([voidOf(voided, voidKey), returnOf(returnedAgain, held, againKey)]);
      heldSale = await heldSelling;
      sales = await selling;
      during = await returnRowCounts(t, tenantId);
    } finally {
      await hold.release();
    }

    assertUnavailable(firstReturn, 'the first return');
    assert.ok(firstReturn.ms >= SALE_LOCK_WAIT_MS - 100 && firstReturn.ms < LANE_ANSWER_BOUND_MS, `the first return answered in ${Math.round(firstReturn.ms)} ms`);
    for (const sent of [...later, heldSale]) {
      assertUnavailable(sent, 'a later void, return or sale of the held balance');
      assert.ok(sent.ms < SALE_LOCK_WAIT_MS, `answered in ${Math.round(sent.ms)} ms, not under the lock wait ${SALE_LOCK_WAIT_MS} ms`);
    }
    assert.equal((await refusals('lock_timeout')) - timeoutsBefore, 1, 'only the first return waited the lock wait');
    assert.equal((await refusals('row_held')) - heldBefore, later.length + 1, 'the void, the return and the sale refused at once');
    for (const sent of sales) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of another row answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    assert.deepEqual(
      { sales: during.sales, operations: during.operations, keys: during.keys, returns: during.returns, entries: during.entries },
      { sales: Number(before.sales) + sales.length, operations: Number(before.operations) + sales.length, keys: Number(before.keys) + sales.length, returns: before.returns, entries: Number(before.entries) + sales.length },
    );
    assert.equal((await balanceAndLedger(t, tenantId, storeA, held)).balance, stockBefore, 'the held balance did not move');
    assert.equal(await statusOf(voided), 'completed');

    // Released: each with its key, once.
    const again = [await returnOf(returned, held, returnKey), await voidOf(voided, voidKey), await returnOf(returnedAgain, held, againKey), await sell(saleOf(storeA, held), heldSaleKey)];
    assert.deepEqual(again.map((sent) => sent.answer.status), [201, 200, 201, 201], JSON.stringify(again.map((sent) => sent.answer.body)));
    assert.equal((await balanceAndLedger(t, tenantId, storeA, held)).balance, stockBefore + 1 + 3 + 1 - 1, 'two returns of 1 and a void of 3 put back, one sold');
    assert.deepEqual(await entriesOf(voided), ['sale', 'sale_void']);
    assert.equal(await statusOf(voided), 'voided');
    const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM sale_returns WHERE tenant_id = $1 AND sale_id = ANY($2::uuid[])`, [tenantId, [returned, returnedAgain]]);
    assert.deepEqual(rows, [{ n: 2 }]);
    await assertConsistent();
  });

  it("a sale naming workshop pieces whose balance a void found held is 503 at once, not after its 15 s lock wait; released, the same keys sell and void once", async () => {
    // Given: a piece-tracked SKU with pieces in store A, and a sale of two of them to void.
    const cloth = (await owner.post('/v1/skus', { code: 'HV-CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body.id as string;
    const received = await owner.post('/v1/pieces', { store_id: storeA, sku_id: cloth, pieces: [1000, 2000, 3000].map((quantity) => ({ kind: 'roll', quantity })) }, { idempotencyKey: randomUUID() });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const [p1, p2, p3] = received.body.pieces as Array<{ id: string }>;
    const pieceSale = (ids: string[]) => ({ store_id: storeA, payment_method: 'cash', items: [{ sku_id: cloth, piece_ids: ids, unit_price: 500 }] });
    const soldPieces = await owner.post('/v1/sales', pieceSale([p1!.id, p2!.id]), { idempotencyKey: randomUUID() });
    assert.equal(soldPieces.status, 201, JSON.stringify(soldPieces.body));
    const before = await returnRowCounts(t, tenantId);
    const stockBefore = (await balanceAndLedger(t, tenantId, storeA, cloth)).balance;
    const timeoutsBefore = await refusals('lock_timeout');
    const heldBefore = await refusals('row_held');
    const salesHeldBefore = await metric('storekeep_sales_row_held_total');
    const hold = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeA, cloth], 'the balance of the cloth');
    const [voidKey, saleKey] = [randomUUID(), randomUUID()];
    let voided: Sent;
    let selling: Sent;
    try {
      // When: the void meets the held balance (one lock wait), then a sale naming another piece of it.
      voided = await voidOf(soldPieces.body.id, voidKey);
      selling = await timed(saleKey, () => owner.post('/v1/sales', pieceSale([p3!.id]), { idempotencyKey: saleKey }));
    } finally {
      await hold.release();
    }
    assertUnavailable(voided, 'the void');
    assertUnavailable(selling, 'the sale naming pieces');
    assert.ok(selling.ms < SALE_LOCK_WAIT_MS, `the sale naming pieces answered in ${Math.round(selling.ms)} ms, not under the lock wait ${SALE_LOCK_WAIT_MS} ms`);
    assert.equal((await refusals('lock_timeout')) - timeoutsBefore, 1, 'only the void waited');
    assert.equal((await refusals('row_held')) - heldBefore, 1, 'the sale refused at once');
    assert.equal((await metric('storekeep_sales_row_held_total')) - salesHeldBefore, 1, 'counted as a sale refused so');
    const during = await returnRowCounts(t, tenantId);
    assert.deepEqual({ sales: during.sales, operations: during.operations, keys: during.keys, entries: during.entries }, { sales: before.sales, operations: before.operations, keys: before.keys, entries: before.entries });
    const pieces = await t.admin.query(`SELECT id, status FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY quantity`, [tenantId, [p1!.id, p2!.id, p3!.id]]);
    assert.deepEqual(pieces.rows.map((row) => row.status), ['sold', 'sold', 'in_stock']);

    // Released: each with its key, once.
    const again = await voidOf(soldPieces.body.id, voidKey);
    assert.equal(again.answer.status, 200, JSON.stringify(again.answer.body));
    const soldAgain = await owner.post('/v1/sales', pieceSale([p3!.id]), { idempotencyKey: saleKey });
    assert.equal(soldAgain.status, 201, JSON.stringify(soldAgain.body));
    assert.equal((await balanceAndLedger(t, tenantId, storeA, cloth)).balance, stockBefore + 3000 - 3000);
    const after = await t.admin.query(`SELECT status FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY quantity`, [tenantId, [p1!.id, p2!.id, p3!.id]]);
    assert.deepEqual(after.rows.map((row) => row.status), ['in_stock', 'in_stock', 'sold']);
    await assertConsistent();
  });
});
