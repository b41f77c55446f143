import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { setTenant } from '../core/command.js';
import { postJournals } from '../money/postJournal.js';
import { SALE_LOCK_WAIT_MS } from './groupCommit.js';
import { heldAccountsOf, rowWaitedFor } from './saleRows.js';
import type { SaleInput } from './sale.table.js';
import { assertGaplessReceipts, balanceAndLedger, givenSku, givenStock, givenStore, holdLocked, LANE_ANSWER_BOUND_MS, saleRowCounts } from './testkit.js';

/**
 * A journal account row held locked from outside (a psql session, a stuck
 * transaction) — a store's sales_revenue, a customer's receivable — must not
 * make the tenant's sales wait for it one by one: the run that timed out on
 * it is decided again once with the sales needing that account answered 503
 * at once (RowHeldElsewhere, nothing of theirs written), and the others are
 * written. (Before: the run was re-run sale by sale, each sale waiting the
 * lane's lock wait again — 6 + 6 sales, the other store's answered after
 * 14.6 s.)
 */
describe('a journal account row held locked from outside does not make the lane wait for it sale by sale', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeA: string;
  let storeB: string;
  let sku: string;
  let customer: string;
  const STOCK = 1_000;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeA = await givenStore(owner, 'ACC-A');
    storeB = await givenStore(owner, 'ACC-B');
    sku = await givenSku(owner, 'ACC-X', 'piece', 10);
    for (const store of [storeA, storeB]) await givenStock(owner, store, [{ sku_id: sku, quantity: STOCK }]);
    customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Held Receivable' })).body.id;
    // Every account the tests hold exists: one sale of each kind per store.
    for (const store of [storeA, storeB]) {
      for (const body of [saleOf(store), { ...saleOf(store), payment_method: 'credit' as const, customer_id: customer }]) {
        const answer = await owner.post('/v1/sales', body, { idempotencyKey: randomUUID() });
        assert.equal(answer.status, 201, JSON.stringify(answer.body));
      }
    }
  });
  after(() => t.close());

  type Body = SaleInput & { items: Array<{ sku_id: string; quantity: number; unit_price: number }> };
  const saleOf = (storeId: string): Body => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 10 }] });
  const creditOf = (storeId: string): Body => ({ ...saleOf(storeId), payment_method: 'credit', customer_id: customer });

  interface Sent {
    key: string;
    body: Body;
    answer: ApiResponse;
    ms: number;
  }
  const send = async (body: Body, key: string = randomUUID()): Promise<Sent> => {
    const started = performance.now();
    const answer = await owner.post('/v1/sales', body, { idempotencyKey: key });
    return { key, body, answer, ms: performance.now() - started };
  };

  /** storekeep_database_wait_refusals_total{kind}, as the API's /metrics serves it. */
  const refusals = async (kind: string) => {
    const text = (await owner.get('/metrics')).body as string;
    const line = text.split('\n').find((each) => each.startsWith(`storekeep_database_wait_refusals_total{kind="${kind}"}`));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  /** Holds an account row locked (FOR UPDATE, as a psql session would) until `release`. */
  const holdAccount = (key: string) =>
    holdLocked(t, `SELECT 1 FROM accounts WHERE tenant_id = $1 AND key = $2 FOR UPDATE`, [tenantId, key], `the account ${key}`);

  /** Balances = ledgers, receipts gapless, account balances = their postings, no integrity finding. */
  const assertConsistent = async () => {
    for (const store of [storeA, storeB]) {
      const { balance, ledger } = await balanceAndLedger(t, tenantId, store, sku);
      assert.equal(balance, ledger, `balance = ledger sum for ${store}`);
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

  /**
   * A 503 as a held balance row answers it: problem+json, service_unavailable, Retry-After (whether it waited is
   * told by the refusals counted: row_held, not lock_timeout).
   */
  const assertUnavailable = (sent: Sent) => {
    assert.equal(sent.answer.status, 503, JSON.stringify(sent.answer.body));
    assert.match(String(sent.answer.headers.get('content-type')), /^application\/problem\+json/);
    assert.equal(sent.answer.body.code, 'service_unavailable');
    assert.match(sent.answer.body.detail, /nothing was written/);
    assert.ok(Number(sent.answer.headers.get('retry-after')) >= 1, `Retry-After: ${sent.answer.headers.get('retry-after')}`);
  };

  /**
   * Sends `bodies` at once while `key` is held; the answers, the lock-timeout and row-held refusals
   * counted meanwhile, and the rows written before the release.
   */
  const whileHeld = async (key: string, bodies: Body[]) => {
    const before = await saleRowCounts(t, tenantId);
    const timeoutsBefore = await refusals('lock_timeout');
    const heldBefore = await refusals('row_held');
    const hold = await holdAccount(key);
    let answers: Sent[];
    let during: Awaited<ReturnType<typeof saleRowCounts>>;
    try {
      // One burst, then a second one once the lane knows the account held: it waits for nothing.
      const first = await Promise.all(bodies.map((body) => send(body)));
      const second = await Promise.all(bodies.map((body) => send(body)));
      for (const sent of second) assert.ok(sent.ms < SALE_LOCK_WAIT_MS, `second burst: answered in ${Math.round(sent.ms)} ms, not under ${SALE_LOCK_WAIT_MS} ms`);
      answers = [...first, ...second];
      during = await saleRowCounts(t, tenantId);
    } finally {
      await hold.release();
    }
    return { before, during, answers, timeouts: (await refusals('lock_timeout')) - timeoutsBefore, held: (await refusals('row_held')) - heldBefore };
  };

  it('a store\'s sales_revenue held: the other store\'s sales are written within one lock wait, the held store\'s are 503 at once (not one lock wait each), nothing of theirs written; once released, their keys sell them once', async () => {
    const key = `store/${storeA}/sales_revenue`;
    const bodies = Array.from({ length: 6 }, () => [saleOf(storeA), saleOf(storeB)]).flat();
    const { before, during, answers, timeouts, held } = await whileHeld(key, bodies);
    const heldOnes = answers.filter((sent) => sent.body.store_id === storeA);
    const others = answers.filter((sent) => sent.body.store_id === storeB);
    for (const sent of others) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a sale of the other store answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    for (const sent of heldOnes) assertUnavailable(sent);
    // No sale was answered by a lock wait of its own: each held one was refused without waiting.
    assert.equal(timeouts, 0, 'no sale answered 503 lock_timeout (one lock wait per sale)');
    assert.equal(held, heldOnes.length, 'every sale of the held store refused as a row held elsewhere');
    assert.equal(during.sales, Number(before.sales) + others.length, 'only the other store\'s sales written');
    assert.equal(Number(during.operations), Number(before.operations) + others.length, 'no operation for the 503s');
    assert.equal(Number(during.keys), Number(before.keys) + others.length, 'no idempotency record for the 503s');

    const retried = await Promise.all(heldOnes.map((sent) => send(sent.body, sent.key)));
    for (const sent of retried) assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
    const replayed = await Promise.all(heldOnes.map((sent) => send(sent.body, sent.key)));
    for (const sent of replayed) assert.equal(sent.answer.headers.get('idempotent-replayed'), 'true');
    assert.equal((await saleRowCounts(t, tenantId)).sales, Number(before.sales) + answers.length);
    await assertConsistent();
  });

  it('a customer\'s receivable held: that customer\'s credit sales are 503 at once, nothing written; every other sale of both stores (cash, of the same store) is written', async () => {
    const key = `party/${customer}`;
    const bodies = [creditOf(storeA), saleOf(storeA), creditOf(storeB), saleOf(storeB), creditOf(storeA), saleOf(storeA), saleOf(storeB), creditOf(storeB)];
    const { before, during, answers, timeouts, held } = await whileHeld(key, bodies);
    const heldOnes = answers.filter((sent) => sent.body.payment_method === 'credit');
    const others = answers.filter((sent) => sent.body.payment_method !== 'credit');
    for (const sent of others) {
      assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
      assert.ok(sent.ms < LANE_ANSWER_BOUND_MS, `a cash sale answered in ${Math.round(sent.ms)} ms, not within ${LANE_ANSWER_BOUND_MS} ms`);
    }
    for (const sent of heldOnes) assertUnavailable(sent);
    assert.equal(timeouts, 0, 'no sale answered 503 lock_timeout');
    assert.equal(held, heldOnes.length);
    assert.equal(during.sales, Number(before.sales) + others.length);
    assert.equal(Number(during.operations), Number(before.operations) + others.length);

    const retried = await Promise.all(heldOnes.map((sent) => send(sent.body, sent.key)));
    for (const sent of retried) assert.equal(sent.answer.status, 201, JSON.stringify(sent.answer.body));
    await assertConsistent();
  });

  it('heldAccountsOf finds a held account without waiting, and gives back the lock it took of a free one at once (the transaction goes on, holding nothing)', async () => {
    const heldKey = `store/${storeB}/sales_revenue`;
    const freeKey = `store/${storeB}/cash_drawer`;
    const hold = await holdAccount(heldKey);
    const other: pg.PoolClient = await t.admin.connect();
    const trx = await t.db.startTransaction().execute();
    try {
      await setTenant(trx, tenantId);
      await sql.raw(`SET LOCAL lock_timeout = '300ms'`).execute(trx);
      assert.deepEqual([...(await heldAccountsOf(trx, tenantId, [heldKey, freeKey, `party/${randomUUID()}`]))], [heldKey]);
      // The transaction still open: another one locks the free account without waiting.
      await other.query('BEGIN');
      const locked = await other.query(`SELECT 1 FROM accounts WHERE tenant_id = $1 AND key = $2 FOR UPDATE NOWAIT`, [tenantId, freeKey]);
      assert.equal(locked.rowCount, 1);
      await other.query('ROLLBACK');
      // …and the transaction itself goes on (its savepoint given back).
      assert.equal((await sql<{ one: number }>`SELECT 1 AS one`.execute(trx)).rows[0]!.one, 1);
    } finally {
      await trx.rollback().execute();
      other.release();
      await hold.release();
    }
  });

  it('rowWaitedFor names the account a timed-out lock wait waited for, when one of the sales posts to it', async () => {
    const key = `store/${storeB}/sales_revenue`;
    const hold = await holdAccount(key);
    try {
      const trx = await t.db.startTransaction().execute();
      try {
        await setTenant(trx, tenantId);
        await sql.raw(`SET LOCAL lock_timeout = '300ms'; SAVEPOINT probe`).execute(trx);
        const postings = [{ account: { storeId: storeB, kind: 'cash_drawer' as const }, amount: 5 }, { account: { storeId: storeB, kind: 'sales_revenue' as const }, amount: -5 }];
        const error = await postJournals(trx, tenantId, [{ kind: 'sale', storeId: storeB, opId: randomUUID(), postings }]).then(
          () => undefined,
          (failure: unknown) => failure,
        );
        assert.equal((error as { code?: string } | undefined)?.code, '55P03');
        await sql.raw('ROLLBACK TO SAVEPOINT probe').execute(trx);
        assert.deepEqual(await rowWaitedFor(trx, tenantId, error, [saleOf(storeA), saleOf(storeB)]), { kind: 'accounts', key });
        // Of sales that post nothing to it (another store's), it is no row of theirs.
        assert.equal(await rowWaitedFor(trx, tenantId, error, [saleOf(storeA)]), null);
      } finally {
        await trx.rollback().execute();
      }
    } finally {
      await hold.release();
    }
  });
});
