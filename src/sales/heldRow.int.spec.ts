import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { sql } from 'kysely';
import { setTenant } from '../core/command.js';
import { SALE_LOCK_WAIT_MS } from './groupCommit.js';
import { balanceKey, loadSaleStates, rowWaitedFor } from './saleRows.js';
import type { SaleInput } from './sale.table.js';
import { assertGaplessReceipts, balanceAndLedger, givenSku, givenStock, givenStore, holdLocked, LANE_ANSWER_BOUND_MS, saleRowCounts } from './testkit.js';

/**
 * One balance row (or receipt counter) held locked from outside — a psql
 * session, a stuck transaction — must not stall the tenant's sale lane: the
 * sales of the tenant's other SKUs and stores are answered within the lane's
 * lock wait (SALE_LOCK_WAIT_MS, 2 s) and a little work, and the sales that
 * need the held row are answered 503 with Retry-After, nothing of theirs
 * written, without each waiting in series. (Before: the batch waited 15 s
 * of lock_timeout, then re-ran its sales one by one, each waiting 15 s
 * again, and every sale of the tenant queued behind.)
 */
describe('a row held locked from outside does not stall the tenant\'s sale lane', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeA: string;
  let storeB: string;
  let held: string;
  let other: string;
  let third: string;
  const STOCK = 1_000;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeA = await givenStore(owner, 'HELD-A');
    storeB = await givenStore(owner, 'HELD-B');
    held = await givenSku(owner, 'HELD-X', 'piece', 10);
    other = await givenSku(owner, 'HELD-Y', 'piece', 10);
    third = await givenSku(owner, 'HELD-Z', 'piece', 10);
    for (const store of [storeA, storeB]) {
      await givenStock(owner, store, [held, other, third].map((sku_id) => ({ sku_id, quantity: STOCK })));
    }
  });
  after(() => t.close());

  const saleOf = (storeId: string, ...skus: string[]): SaleInput & { items: Array<{ sku_id: string; quantity: number; unit_price: number }> } => ({ store_id: storeId, payment_method: 'cash', items: skus.map((sku_id) => ({ sku_id, quantity: 1, unit_price: 10 })) });

  interface Sent {
    key: string;
    body: ReturnType<typeof saleOf>;
    answer: ApiResponse;
    ms: number;
  }
  /** Sends a sale and notes how long its answer took. */
  const send = async (body: ReturnType<typeof saleOf>, key: string = randomUUID(), client: ApiClient = owner): Promise<Sent> => {
    const started = performance.now();
    const answer = await client.post('/v1/sales', body, { idempotencyKey: key });
    return { key, body, answer, ms: performance.now() - started };
  };

  const assertBalancesEqualLedgers = async () => {
    for (const store of [storeA, storeB]) {
      for (const sku of [held, other, third]) {
        const { balance, ledger } = await balanceAndLedger(t, tenantId, store, sku);
        assert.equal(balance, ledger, `balance = ledger sum for ${store}/${sku}`);
      }
    }
  };

  const soldOf = async (storeId: string, skuId: string) =>
    Number(
      (
        await t.admin.query(
          `SELECT coalesce(sum(i.quantity), 0)::int AS n FROM sale_items i JOIN sales s ON s.tenant_id = i.tenant_id AND s.id = i.sale_id
           WHERE i.tenant_id = $1 AND s.store_id = $2 AND i.sku_id = $3`,
          [tenantId, storeId, skuId],
        )
      ).rows[0].n,
    );

  /** A 503 as today's lock wait answers it: problem+json, service_unavailable, Retry-After. */
  const assertUnavailable = (sent: Sent) => {
    assert.equal(sent.answer.status, 503, JSON.stringify(sent.answer.body));
    assert.match(String(sent.answer.headers.get('content-type')), /^application\/problem\+json/);
    assert.equal(sent.answer.body.code, 'service_unavailable');
    assert.match(sent.answer.body.detail, /nothing was written/);
    assert.ok(Number(sent.answer.headers.get('retry-after')) >= 1, `Retry-After: ${sent.answer.headers.get('retry-after')}`);
  };

  it('a held stock balance: the other SKUs and stores sell within the bound; the held one is 503 at once, nothing written; once released, the same keys sell it exactly once', async () => {
    const before = await saleRowCounts(t, tenantId);
    const hold = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeA, held]);
    let first: Sent[];
    let second: Sent[];
    let third_: Sent[];
    try {
      // When: one burst of sales needing the held row (one of them with another SKU too) among
      // sales of the other SKUs of its store and of every SKU of the other store…
      const heldSales = () => [saleOf(storeA, held), saleOf(storeA, held), saleOf(storeA, other, held), saleOf(storeA, held), saleOf(storeA, held)];
      const otherSales = () => [saleOf(storeA, other), saleOf(storeA, third), saleOf(storeB, held), saleOf(storeB, other), saleOf(storeA, other, third), saleOf(storeB, third)];
      const burst = [...heldSales(), ...otherSales()];
      const firstWave = Promise.all(burst.map((body) => send(body)));
      // …and more of the other sales arriving while the first batch waits for the held row.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const lateWave = Promise.all([...otherSales(), ...otherSales()].map((body) => send(body)));
      first = await firstWave;
      const late = await lateWave;
      // Then, once the lane knows the row is held: a second burst waits for nothing.
      second = await Promise.all([...heldSales(), ...otherSales()].map((body) => send(body)));
      third_ = [...first.slice(heldSales().length), ...late];
      first = first.slice(0, heldSales().length);
    } finally {
      // A failing assertion must not leave the row held (nor the app waiting behind it).
      await hold.release();
    }
    const heldOnes = [...first, ...second.slice(0, 5)];
    const otherOnes = [...third_, ...second.slice(5)];
    for (const sent of otherOnes) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of another SKU or store answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    for (const sent of heldOnes) {
      assertUnavailable(sent);
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of the held row answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    // The second burst found the row known held: nothing of it waited the lane's lock wait again.
    for (const sent of second) assert.ok(sent.ms < SALE_LOCK_WAIT_MS, `second burst: answered in ${Math.round(sent.ms)} ms, not under ${SALE_LOCK_WAIT_MS} ms`);

    // Nothing of the held sales was written: exactly the other sales are.
    const during = await saleRowCounts(t, tenantId);
    assert.equal(during.sales, Number(before.sales) + otherOnes.length);
    assert.equal(await soldOf(storeA, held), 0, 'nothing sold from the held row');
    assert.equal(
      Number(during.operations),
      Number(before.operations) + otherOnes.length,
      'one operation per accepted sale, none for the 503s',
    );
    assert.equal(Number(during.keys), Number(before.keys) + otherOnes.length, 'no idempotency record for the 503s');

    // When the row is released, the same requests with their keys sell it once each; again, they replay.
    const retried = await Promise.all(heldOnes.map((sent) => send(sent.body, sent.key)));
    for (const sent of retried) assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
    const replayed = await Promise.all(heldOnes.map((sent) => send(sent.body, sent.key)));
    for (const sent of replayed) {
      assert.equal(sent.answer.status, 201);
      assert.equal(sent.answer.headers.get('idempotent-replayed'), 'true');
    }
    assert.equal(await soldOf(storeA, held), heldOnes.length);

    // Then: counts exact, balances = ledgers, receipts gapless, no integrity finding.
    const afterAll = await saleRowCounts(t, tenantId);
    assert.equal(afterAll.sales, Number(before.sales) + otherOnes.length + heldOnes.length);
    const expected = (store: string, sku: string) =>
      STOCK - [...otherOnes, ...heldOnes].filter((sent) => sent.body.store_id === store).flatMap((sent) => sent.body.items).filter((item) => item.sku_id === sku).length;
    for (const store of [storeA, storeB]) {
      for (const sku of [held, other, third]) assert.equal((await balanceAndLedger(t, tenantId, store, sku)).balance, expected(store, sku), `stock of ${store}/${sku}`);
    }
    await assertBalancesEqualLedgers();
    await assertGaplessReceipts(t, tenantId);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two API processes, and a void of a sale of the held row in the lane: each process\'s other sales within the bound, the void and the held sales 503, nothing of theirs written', async () => {
    const second = await startSecondApi(t);
    try {
      const onSecond = second.client(owner.token!);
      // Given: a sale of the row about to be held, to void while it is held.
      const sold = await send(saleOf(storeB, other));
      assert.equal(sold.answer.status, 201);
      const before = await saleRowCounts(t, tenantId);
      const hold = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeB, other]);
      const voidKey = randomUUID();
      let voided: { answer: ApiResponse; ms: number };
      let first: Sent[];
      let answers: Sent[];
      try {
        // When: both processes sell (each process's lane meets the held row once)…
        const bodies = () => [saleOf(storeB, other), saleOf(storeA, other), saleOf(storeB, third), saleOf(storeA, held), saleOf(storeB, held, other), saleOf(storeA, third)];
        const wave = () => Promise.all([...bodies().map((body) => send(body)), ...bodies().map((body) => send(body, randomUUID(), onSecond))]);
        first = await wave();
        // …then a void of a sale of the held row (a batch of its own: it waits the lane's lock wait) with more sales behind it.
        const voiding = (async () => {
          const started = performance.now();
          const answer = await owner.post(`/v1/sales/${sold.answer.body.id}/void`, { reason: 'held row' }, { idempotencyKey: voidKey });
          return { answer, ms: performance.now() - started };
        })();
        await new Promise((resolve) => setTimeout(resolve, 50));
        answers = await wave();
        voided = await voiding;
      } finally {
        await hold.release();
      }
      const needsHeld = (sent: Sent) => sent.body.store_id === storeB && sent.body.items.some((item) => item.sku_id === other);
      const timings = () => [...first, ...answers].map((sent) => `${sent.answer.status} in ${Math.round(sent.ms)} ms`).join(', ');
      for (const sent of [...first, ...answers]) {
        if (needsHeld(sent)) assertUnavailable(sent);
        else assert.equal(sent.answer.status, 201, `${JSON.stringify(sent.answer.body)} (${timings()})`);
      }
      // Each process's lane waits for the held row once — twice at most when its batch queued behind the other
      // process's batch already waiting for it (PostgreSQL times the wait for the row's place in line and the
      // wait for its holder each on its own) — and then not again: after the void's wait, the sales flow.
      for (const sent of first) assert.ok(sent.ms < 2 * SALE_LOCK_WAIT_MS + 2_000, `first wave: ${timings()}`);
      for (const sent of answers) assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `after the void: ${timings()}`);
      answers = [...first, ...answers];
      // The void waited the lane's lock wait, not 15 s, and wrote nothing.
      assert.equal(voided.answer.status, 503, JSON.stringify(voided.answer.body));
      assert.equal(voided.answer.body.code, 'service_unavailable');
      assert.ok(voided.ms < LANE_ANSWER_BOUND_MS, `the void answered in ${Math.round(voided.ms)} ms`);
      const accepted = answers.filter((sent) => !needsHeld(sent));
      const during = await saleRowCounts(t, tenantId);
      assert.equal(during.sales, Number(before.sales) + accepted.length);
      assert.equal(during.operations, Number(before.operations) + accepted.length, 'no operation for the void nor the held sales');
      assert.equal((await t.admin.query(`SELECT status FROM sales WHERE tenant_id = $1 AND id = $2`, [tenantId, sold.answer.body.id])).rows[0].status, 'completed');

      // Released: the void and the held sales, with their keys, go through once each.
      const again = await owner.post(`/v1/sales/${sold.answer.body.id}/void`, { reason: 'held row' }, { idempotencyKey: voidKey });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      const retried = await Promise.all(answers.filter(needsHeld).map((sent) => send(sent.body, sent.key, onSecond)));
      for (const sent of retried) assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      const afterAll = await saleRowCounts(t, tenantId);
      assert.equal(afterAll.sales, Number(before.sales) + answers.length);
      assert.equal((await balanceAndLedger(t, tenantId, storeB, other)).balance, STOCK - (await soldOf(storeB, other)) + 1, 'the voided unit returned');
      await assertBalancesEqualLedgers();
      await assertGaplessReceipts(t, tenantId);
      assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    } finally {
      await second.close();
    }
  });

  it('a partial return of a sale of the held row (it runs in the lane too): it waits the lane\'s lock wait, not 15 s, and the sales behind it flow; 503, nothing written; once released, its key makes it once', async () => {
    // Given: a sale of the row about to be held, to take back part of while it is held.
    const sold = await send({ ...saleOf(storeA, other), items: [{ sku_id: other, quantity: 3, unit_price: 10 }] });
    assert.equal(sold.answer.status, 201, JSON.stringify(sold.answer.body));
    const before = await saleRowCounts(t, tenantId);
    const hold = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeA, other]);
    const returnKey = randomUUID();
    const giveBack = () => owner.post(`/v1/sales/${sold.answer.body.id}/returns`, { items: [{ sku_id: other, quantity: 1 }], reason: 'held row' }, { idempotencyKey: returnKey });
    let returned: { answer: ApiResponse; ms: number };
    let behind: Sent[];
    try {
      // When: the return (a batch of its own in the tenant's lane) with sales of other rows right behind it
      const returning = (async () => {
        const started = performance.now();
        const answer = await giveBack();
        return { answer, ms: performance.now() - started };
      })();
      await new Promise((resolve) => setTimeout(resolve, 50));
      behind = await Promise.all([saleOf(storeB, third), saleOf(storeA, held), saleOf(storeB, other)].map((body) => send(body)));
      returned = await returning;
    } finally {
      await hold.release();
    }
    // Then: the sales behind it are answered within the lane's bound, not after the session's 15 s lock_timeout
    for (const sent of behind) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale behind the return answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    // And the return is a 503 within the bound, nothing of it written
    assertUnavailable({ key: returnKey, body: saleOf(storeA, other), ...returned });
    assert.ok(returned.ms < LANE_ANSWER_BOUND_MS, `the return answered in ${Math.round(returned.ms)} ms`);
    const during = await saleRowCounts(t, tenantId);
    assert.equal(during.operations, Number(before.operations) + behind.length, 'no operation for the return');
    const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM sale_returns WHERE tenant_id = $1 AND sale_id = $2`, [tenantId, sold.answer.body.id]);
    assert.deepEqual(rows, [{ n: 0 }]);

    // Released: the same key makes the return, once
    const again = await giveBack();
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal((await giveBack()).headers.get('idempotent-replayed'), 'true');
    const made = await t.admin.query(`SELECT count(*)::int AS n FROM sale_returns WHERE tenant_id = $1 AND sale_id = $2`, [tenantId, sold.answer.body.id]);
    assert.deepEqual(made.rows, [{ n: 1 }]);
    await assertBalancesEqualLedgers();
    await assertGaplessReceipts(t, tenantId);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a held receipt counter: the other store sells within the bound; the held store\'s sales are 503, nothing written, and take no number', async () => {
    const before = await saleRowCounts(t, tenantId);
    const hold = await holdLocked(t, `SELECT 1 FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2 FOR UPDATE`, [tenantId, storeB]);
    let answers: Sent[];
    let again: Sent[];
    try {
      const burst = () => [saleOf(storeB, other), saleOf(storeA, other), saleOf(storeB, third), saleOf(storeA, third), saleOf(storeA, held), saleOf(storeB, held)];
      answers = await Promise.all(burst().map((body) => send(body)));
      again = await Promise.all(burst().map((body) => send(body)));
    } finally {
      await hold.release();
    }
    const heldOnes = [...answers, ...again].filter((sent) => sent.body.store_id === storeB);
    const otherOnes = [...answers, ...again].filter((sent) => sent.body.store_id === storeA);
    for (const sent of otherOnes) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of the other store answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    for (const sent of heldOnes) {
      assertUnavailable(sent);
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of the held store answered in ${Math.round(sent.ms)} ms`);
    }
    for (const sent of again) assert.ok(sent.ms < SALE_LOCK_WAIT_MS, `second burst: answered in ${Math.round(sent.ms)} ms`);
    const during = await saleRowCounts(t, tenantId);
    assert.equal(during.sales, Number(before.sales) + otherOnes.length);
    assert.equal(during.operations, Number(before.operations) + otherOnes.length);

    const retried = await Promise.all(heldOnes.map((sent) => send(sent.body, sent.key)));
    for (const sent of retried) assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
    const afterAll = await saleRowCounts(t, tenantId);
    assert.equal(afterAll.sales, Number(before.sales) + otherOnes.length + heldOnes.length);
    await assertBalancesEqualLedgers();
    await assertGaplessReceipts(t, tenantId);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a held row with another transaction already waiting for it (the lane\'s wait names no row): the run is decided again with every row locked without waiting; the others sell, the held one is 503', async () => {
    const before = await saleRowCounts(t, tenantId);
    const hold = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeB, third]);
    // Another transaction (an adjustment, a psql session) already waits for the row: the lane queues behind it.
    const waiter: pg.PoolClient = await t.admin.connect();
    let answers: Sent[];
    let again: Sent[];
    let waited: Promise<unknown>;
    try {
      await waiter.query('BEGIN');
      waited = waiter.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeB, third]);
      for (;;) {
        const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [(waiter as unknown as { processID: number }).processID]);
        if (rows[0].n > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const burst = () => [saleOf(storeB, third), saleOf(storeA, other), saleOf(storeB, other), saleOf(storeB, held, third), saleOf(storeA, third), saleOf(storeB, held)];
      answers = await Promise.all(burst().map((body) => send(body)));
      again = await Promise.all(burst().map((body) => send(body)));
    } finally {
      await hold.release();
      await waited!;
      await waiter.query('ROLLBACK');
      waiter.release();
    }
    const needsHeld = (sent: Sent) => sent.body.store_id === storeB && sent.body.items.some((item) => item.sku_id === third);
    for (const sent of [...answers, ...again]) {
      if (needsHeld(sent)) assertUnavailable(sent);
      else assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      // Behind another waiter PostgreSQL times the wait for the row's place in line on its own: one lock wait.
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    for (const sent of again) assert.ok(sent.ms < SALE_LOCK_WAIT_MS, `second burst: answered in ${Math.round(sent.ms)} ms`);
    const accepted = [...answers, ...again].filter((sent) => !needsHeld(sent));
    const during = await saleRowCounts(t, tenantId);
    assert.equal(during.sales, Number(before.sales) + accepted.length);
    assert.equal(during.operations, Number(before.operations) + accepted.length);
    const retried = await Promise.all([...answers, ...again].filter(needsHeld).map((sent) => send(sent.body, sent.key)));
    for (const sent of retried) assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
    await assertBalancesEqualLedgers();
    await assertGaplessReceipts(t, tenantId);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('rowWaitedFor names the row a timed-out lock wait waited for (a balance, a counter), and none for a wait in line behind another waiter', async () => {
    const sales = [saleOf(storeA, third), saleOf(storeA, other), saleOf(storeB, third)];
    /** Locks the sales' rows in a transaction of the app waiting at most `waitMs`; the error and what rowWaitedFor makes of it. */
    const waitFor = async (waitMs: number, locking = sales) => {
      const trx = await t.db.startTransaction().execute();
      try {
        await setTenant(trx, tenantId);
        await sql.raw(`SET LOCAL lock_timeout = '${waitMs}ms'; SAVEPOINT probe`).execute(trx);
        const error = await loadSaleStates(trx, tenantId, locking, { lock: true }).then(
          () => undefined,
          (failure: unknown) => failure,
        );
        await sql.raw('ROLLBACK TO SAVEPOINT probe').execute(trx);
        return { code: (error as { code?: string } | undefined)?.code, waitedFor: error === undefined ? undefined : await rowWaitedFor(trx, tenantId, error, locking) };
      } finally {
        await trx.rollback().execute();
      }
    };
    const balance = await holdLocked(t, `SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeA, third]);
    try {
      assert.deepEqual(await waitFor(300), { code: '55P03', waitedFor: { kind: 'balances', key: balanceKey(storeA, third) } });
      // A second waiter for the row queues for its place in line behind the first: its error names no row.
      const onlyHeld = [saleOf(storeA, third)];
      const firstWaiter = waitFor(1_500, onlyHeld);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(await waitFor(300, onlyHeld), { code: '55P03', waitedFor: null });
      assert.deepEqual((await firstWaiter).waitedFor, { kind: 'balances', key: balanceKey(storeA, third) });
    } finally {
      await balance.release();
    }
    const counter = await holdLocked(t, `SELECT 1 FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2 FOR UPDATE`, [tenantId, storeB]);
    try {
      assert.deepEqual(await waitFor(300), { code: '55P03', waitedFor: { kind: 'counters', key: storeB.toLowerCase() } });
    } finally {
      await counter.release();
    }
    assert.deepEqual(await waitFor(300), { code: undefined, waitedFor: undefined }, 'nothing held: no wait');
  });
});
