import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiClient, type ApiResponse } from '../../test/support/client.js';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { capturingLogger } from '../../test/support/logs.js';
import { Outage } from '../../test/support/outage.js';
import { sleep } from '../../test/support/wait.js';
import { createPool } from '../core/db.js';
import type { App } from './app.js';
import { shopBehindOutage } from '../../test/support/shopBehindOutage.js';

/**
 * The network to PostgreSQL stops passing data on open connections without
 * closing them (a host that froze, a partition, a NAT or firewall that forgot
 * the flow — not a stopped server, which closes its sockets). The server's
 * answer never comes, so statement_timeout cannot help, and TCP gives up on
 * such a connection only after ~15 minutes: a request, or a tenant's whole
 * group-commit lane, waited that long (3 sales unanswered after 45 s). The
 * pool's connections now give up on a statement not answered within their
 * answer timeout (here a short one): the request is answered 503 with
 * Retry-After, the connection is closed and leaves the pool.
 */
describe('PostgreSQL goes silent on open connections (nothing closed): answered within the answer timeout', () => {
  const ANSWER_TIMEOUT_MS = 1_000;
  const POOL_SIZE = 5;
  let t: TestDatabase;
  let app: App;
  let outage: Outage;
  let owner: ApiClient;
  let storeId: string;
  let skuId: string;
  let pool: ReturnType<typeof createPool>;
  const { logger, lines } = capturingLogger('warn');

  before(async () => {
    t = await createTestDatabase();
    // Tokens stay cached for the whole file: a sale then goes straight to its lane, with no lookup of its token first.
    ({ app, pool, outage, owner, storeId, skuId } = await shopBehindOutage(t, { logger, tenantName: 'silent', poolSize: POOL_SIZE, answerTimeoutMs: ANSWER_TIMEOUT_MS, tokenCacheMs: 10 * 60_000 }));
    assert.equal((await owner.get(`/v1/stores/${storeId}`)).status, 200); // the owner's token is now cached
  });
  after(async () => {
    outage.thaw();
    await app.close();
    await outage.down();
    await t.drop();
  });

  const sell = (key: string) =>
    owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 100, unit_price: 250 }] }, { idempotencyKey: key });

  /** The response, with how long it took; a failure if none came within `ms` (the old code waited as long as TCP: ~15 minutes). */
  async function timed(what: string, ms: number, request: Promise<ApiResponse>): Promise<ApiResponse & { tookMs: number }> {
    const started = Date.now();
    const answer = await Promise.race([request, sleep(ms).then(() => undefined)]);
    if (answer === undefined) assert.fail(`${what}: no answer within ${ms} ms while the database was silent`);
    return { ...answer, tookMs: Date.now() - started };
  }

  function assertUnavailable(what: string, response: ApiResponse): void {
    assert.equal(response.status, 503, `${what}: ${JSON.stringify(response.body)}`);
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, 'service_unavailable');
    assert.ok(Number(response.headers.get('retry-after')) > 0, `${what}: Retry-After ${response.headers.get('retry-after')}`);
  }

  /** Opens every connection the pool may have and puts them back idle: what the network then drops is all the pool has. */
  async function openEveryConnection(): Promise<void> {
    const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => pool.connect()));
    for (const client of clients) await client.query('SELECT 1');
    for (const client of clients) client.release();
    assert.equal(pool.totalCount, POOL_SIZE);
  }

  async function rowsLeft(): Promise<{ sales: number; stock: number; ledger: number; receipts: number[]; keys: number }> {
    const { rows } = await t.admin.query(
      `SELECT (SELECT count(*)::int FROM sales WHERE store_id = $1) AS sales,
              (SELECT quantity::int FROM stock_balances WHERE store_id = $1 AND sku_id = $2) AS stock,
              (SELECT sum(quantity_change)::int FROM stock_ledger WHERE store_id = $1 AND sku_id = $2) AS ledger,
              (SELECT coalesce(array_agg(receipt_number ORDER BY receipt_number), '{}') FROM sales WHERE store_id = $1) AS receipts,
              (SELECT count(*)::int FROM idempotency_keys k JOIN sales s ON s.op_id = k.op_id WHERE s.store_id = $1) AS keys`,
      [storeId, skuId],
    );
    return { ...rows[0], receipts: rows[0].receipts.map(Number) };
  }

  it('a sale, a read, and sales waiting in the lane behind a silent batch are each answered 503 with Retry-After within the timeout, nothing written; once the network passes again the same keys are written once, and the lane and the pool serve', async () => {
    // Given a working API whose pool holds its every connection open
    assert.equal((await sell('before')).status, 201);
    await openEveryConnection();
    const bound = ANSWER_TIMEOUT_MS * 3; // the timeout, plus a batch ahead in the lane that waits its own

    // When the network stops passing data on those connections (they stay open)
    outage.dropOpenConnections();
    const keys = ['silent', 'lane-1', 'lane-2', 'lane-3'];
    try {
      // Then a sale is answered 503 within the timeout — after waiting it, not before
      const sale = await timed('a sale', bound, sell('silent'));
      assertUnavailable('a sale', sale);
      assert.ok(sale.tookMs >= ANSWER_TIMEOUT_MS - 50, `answered after ${sale.tookMs} ms`);
      // And a plain read (a connection of the pool's own)
      assertUnavailable('a read', await timed('GET /v1/stores/{id}', bound, owner.get(`/v1/stores/${storeId}`)));
      // And every sale waiting in the lane behind a silent batch is answered too (the lane does not hang)
      const lane = await Promise.all(keys.slice(1).map((key) => timed(`sale ${key}`, bound * 2, sell(key))));
      for (const [index, answer] of lane.entries()) assertUnavailable(`sale ${keys[index + 1]}`, answer);
    } finally {
      outage.thaw();
    }
    // And nothing of them was written
    assert.deepEqual(await rowsLeft(), { sales: 1, stock: 9_900, ledger: 9_900, receipts: [1], keys: 1 });
    // And each was logged as the database unavailable, naming what happened
    const warned = lines.filter((line) => line.msg === 'the database is unavailable');
    assert.equal(warned.length, keys.length + 1, JSON.stringify(warned)); // one per request
    for (const line of warned) assert.match(String((line.error as { message?: unknown }).message), /did not answer a statement within 1000 ms/, JSON.stringify(line));

    // When the network passes again: the same keys are written once (first write), then replayed
    for (const key of keys) {
      const retried = await sell(key);
      assert.equal(retried.status, 201, `${key}: ${JSON.stringify(retried.body)}`);
      assert.equal(retried.headers.get('idempotent-replayed'), null, key);
      assert.equal((await sell(key)).headers.get('idempotent-replayed'), 'true', key);
    }
    // And the lane serves new sales, and the pool requests
    assert.equal((await sell('after')).status, 201);
    assert.equal((await owner.get(`/v1/stores/${storeId}`)).status, 200);
    // And the rows check out: one sale per key, stock = ledger, receipt numbers gapless
    assert.deepEqual(await rowsLeft(), { sales: 6, stock: 9_400, ledger: 9_400, receipts: [1, 2, 3, 4, 5, 6], keys: 6 });
    const integrity = await owner.get('/v1/integrity');
    assert.equal(integrity.status, 200);
    assert.deepEqual(integrity.body.findings, []);
  });

  it('a COMMIT that reached PostgreSQL but whose answer never came: 503 with Retry-After within the timeout, the lane and the pool go on, and the retry with the key replays the sale it committed', async () => {
    const before = await rowsLeft();
    // Given the next COMMIT's answer is lost (the statement reaches the server and commits)
    outage.loseAnswers((bytes) => bytes.includes('commit\u0000'));
    let lost: Awaited<ReturnType<typeof timed>>;
    try {
      // When a sale commits in its batch
      lost = await timed('a sale whose COMMIT got no answer', ANSWER_TIMEOUT_MS * 3, sell('commit-lost'));
    } finally {
      outage.thaw();
    }
    // Then it is answered 503 (it may or may not have happened: the till retries with its key)
    assertUnavailable('a sale whose COMMIT got no answer', lost);
    assert.match(lost.body.detail, /retry with the same Idempotency-Key/);
    // And the lane and the pool go on at once
    assert.equal((await sell('after-lost-commit')).status, 201);
    assert.equal((await owner.get(`/v1/stores/${storeId}`)).status, 200);
    // And the retry replays the sale, which had committed: written once
    const retried = await sell('commit-lost');
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    const receipts = [...before.receipts, before.receipts.length + 1, before.receipts.length + 2];
    assert.deepEqual(await rowsLeft(), { sales: before.sales + 2, stock: before.stock - 200, ledger: before.ledger - 200, receipts, keys: before.keys + 2 });
  });

  it('a plain command (not in a lane) whose COMMIT answer never came: 503 within the timeout; the retry with the key replays it, written once', async () => {
    outage.loseAnswers((bytes) => bytes.includes('commit\u0000'));
    let lost: Awaited<ReturnType<typeof timed>>;
    try {
      lost = await timed('a store whose COMMIT got no answer', ANSWER_TIMEOUT_MS * 3, owner.post('/v1/stores', { code: 'SECOND', name: 'Second' }, { idempotencyKey: 'store-lost' }));
    } finally {
      outage.thaw();
    }
    assertUnavailable('a store whose COMMIT got no answer', lost);
    const retried = await owner.post('/v1/stores', { code: 'SECOND', name: 'Second' }, { idempotencyKey: 'store-lost' });
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.equal(retried.headers.get('idempotent-replayed'), 'true');
    const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM stores WHERE code = 'SECOND'`);
    assert.equal(rows[0].n, 1);
  });
});
