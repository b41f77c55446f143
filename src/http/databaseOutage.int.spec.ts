import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../test/support/client.js';
import { Outage } from '../../test/support/outage.js';
import { sleep } from '../../test/support/wait.js';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { capturingLogger } from '../../test/support/logs.js';
import type { App } from './app.js';
import { shopBehindOutage } from '../../test/support/shopBehindOutage.js';

describe('PostgreSQL goes away while the API runs, and comes back', () => {
  let t: TestDatabase;
  let app: App;
  let outage: Outage;
  let owner: ApiClient;
  let storeId: string;
  let skuId: string;
  const { logger, lines } = capturingLogger('warn');

  before(async () => {
    t = await createTestDatabase();
    ({ app, outage, owner, storeId, skuId } = await shopBehindOutage(t, { logger, tenantName: 'outage', poolSize: 5 }));
  });
  after(async () => {
    await app.close();
    await outage.down();
    await t.drop();
  });

  const sell = (key: string) =>
    owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 100, unit_price: 250 }] }, { idempotencyKey: key });

  it('while it is gone, commands and reads are 503 service_unavailable problems with Retry-After, and /readyz says so; once it is back, the same API serves again', async () => {
    // Given a working API
    assert.equal((await sell('before')).status, 201);

    // When PostgreSQL goes away (every connection cut, nothing listening)
    await outage.down();
    const refused = [await sell('during'), await owner.get(`/v1/stores/${storeId}/stock`), await owner.get('/v1/stores')];

    // Then each request is a clear 503 (not a 500 "unexpected error"), retryable
    for (const response of refused) {
      assert.equal(response.status, 503, JSON.stringify(response.body));
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(response.body.code, 'service_unavailable');
      assert.ok(Number(response.headers.get('retry-after')) > 0);
    }
    const notReady = await owner.get('/readyz');
    assert.equal(notReady.status, 503);
    // And the log says so once per request in a line an operator can read: what failed, not the driver's stack each time
    const warned = lines.filter((line) => line.msg === 'the database is unavailable' || line.msg === 'readiness check failed');
    assert.equal(warned.length, refused.length + 1, JSON.stringify(warned));
    for (const line of warned) {
      assert.equal(line.err, undefined, JSON.stringify(line));
      const error = line.error as Record<string, unknown>;
      assert.equal(typeof error.message, 'string', JSON.stringify(line));
      assert.equal(error.stack, undefined, JSON.stringify(line));
    }

    // When it comes back, without restarting the API
    await outage.up();

    // Then the refused sale applies once on retry with its key, and everything answers again
    const retried = await sell('during');
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.equal((await sell('during')).headers.get('idempotent-replayed'), 'true');
    assert.equal((await owner.get('/readyz')).status, 200);
    const sales = await t.admin.query(`SELECT count(*)::int AS n FROM sales WHERE store_id = $1`, [storeId]);
    assert.equal(sales.rows[0].n, 2);
  });

  it('a database that stops answering without closing the connection: /readyz says 503 within READINESS_TIMEOUT_MS, and 200 once it answers again', async () => {
    assert.equal((await owner.get('/readyz')).status, 200);
    outage.freeze();
    try {
      // (the probe answers by itself: without its own limit it would wait as long as the network does — here, until the thaw)
      const notReady = await Promise.race([owner.get('/readyz'), sleep(20_000).then(() => 'no answer while the database was silent' as const)]);
      if (typeof notReady === 'string') assert.fail(notReady);
      assert.equal(notReady.status, 503, JSON.stringify(notReady.body));
      assert.deepEqual(notReady.body, { status: 'not_ready', database: 'unreachable' });
    } finally {
      outage.thaw();
    }
    assert.equal((await owner.get('/readyz')).status, 200);
  });

  it('a probe connection the network dropped silently, while new connections go through: /readyz answers 503 once, then 200 from a new connection', async () => {
    assert.equal((await owner.get('/readyz')).status, 200); // its connection is open (kept between probes)
    outage.dropOpenConnections();
    try {
      // The probe on the dropped connection gets no answer: 503 after READINESS_TIMEOUT_MS
      const first = await owner.get('/readyz');
      assert.equal(first.status, 503, JSON.stringify(first.body));
      // The next one must not wait behind that connection (it would for as long as the network does): a new one answers
      const next = await owner.get('/readyz');
      assert.equal(next.status, 200, JSON.stringify(next.body));
    } finally {
      outage.thaw();
    }
    assert.equal((await owner.get('/readyz')).status, 200);
  });

  it('a connection cut while sales are in flight answers each of them (201 or 503), never crashes the process, and leaves nothing half-written', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `cut-${i}`);
    const inFlight = keys.map((key) => sell(key).then((r) => r.status));
    // Cut as soon as one is answered: the rest are queued, running or committing.
    await Promise.race(inFlight);
    await outage.down();
    const statuses = await Promise.all(inFlight);
    assert.ok(statuses.every((status) => status === 201 || status === 503), `statuses: ${statuses}`);
    await outage.up();
    for (const key of keys) assert.equal((await sell(key)).status, 201);
    const { rows } = await t.admin.query(
      `SELECT (SELECT count(*)::int FROM sales WHERE store_id = $1) AS sales,
              (SELECT quantity::int FROM stock_balances WHERE store_id = $1 AND sku_id = $2) AS stock`,
      [storeId, skuId],
    );
    assert.deepEqual(rows[0], { sales: 32, stock: 10_000 - 32 * 100 });
  });
});
