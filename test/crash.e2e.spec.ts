import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { freePort, spawnStorekeep } from './support/processes.js';
import { allChecks } from '../src/integrity/registry.js';
import { runChecksAsOwner } from '../src/integrity/runChecks.js';
import { startProviderSim, type ProviderSim } from '../src/providerSim/providerSim.js';
import { ApiClient } from './support/client.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { sleep, waitFor } from './support/wait.js';
import { testCheckLog } from './support/integrity.js';

/**
 * The crash test: the real API and worker as child processes on one
 * PostgreSQL, concurrent sales and orders, `kill -9` at random moments, restart.
 * Afterwards every acknowledged operation exists exactly once, retrying every
 * idempotency key creates nothing new, the checker finds nothing, and no
 * order is left in pending/submitting.
 */
const SECRET = 'crash-test-webhook-secret';
const ROOT_TOKEN = `crash-test-operator-${randomUUID()}`;

type Kind = 'sale' | 'order';
interface Attempt {
  kind: Kind;
  key: string;
  path: string;
  body: unknown;
  /** The 2xx body the client got, if it got one. */
  acknowledged?: { status: number; id: string };
}

describe('crash test: kill -9 the API and the worker under load', { timeout: 180_000 }, () => {
  let t: TestDatabase;
  let sim: ProviderSim;
  let apiPort: number;
  let api: ChildProcess | undefined;
  let worker: ChildProcess | undefined;
  const output: string[] = [];
  /** The load clients run while this is true; after() clears it, so a test that timed out does not leave them looping for ever (the file's process would never exit, and `npm test` with it). */
  let running = false;

  const spawnCli = (command: string) =>
    spawnStorekeep(command, { databaseUrl: t.url, appUrl: t.appUrl, port: apiPort, rootToken: ROOT_TOKEN, providerUrl: sim.url, webhookSecret: SECRET, jobMaxAttempts: 6 }, output);
  const startApi = async () => {
    api = spawnCli('serve');
    const child = api;
    await waitFor(
      'the API to be ready',
      async () => {
        if (child.exitCode !== null) throw new Error(`API exited ${child.exitCode}: ${output.slice(-20).join('')}`);
        try {
          return (await fetch(`http://127.0.0.1:${apiPort}/readyz`)).status === 200;
        } catch {
          return false;
        }
      },
      90_000,
      100,
    );
  };
  const startWorkerProcess = async () => {
    worker = spawnCli('worker');
    // started when it answers nothing yet: give it its start-up time
    await sleep(500);
  };
  const kill9 = async (child: ChildProcess | undefined) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };

  before(async () => {
    t = await createTestDatabase();
    sim = await startProviderSim({ secret: SECRET, faults: { failRate: 0.1, latencyMs: 20, duplicateWebhooks: true } });
    apiPort = await freePort();
    sim.webhookUrl = `http://127.0.0.1:${apiPort}/v1/webhooks/fulfilment`;
  });
  after(async () => {
    running = false;
    await kill9(api);
    await kill9(worker);
    await sim.stop();
    await t.drop();
  });

  it('keeps every acknowledged operation exactly once, and nothing inconsistent or stuck', async () => {
    await Promise.all([startApi(), startWorkerProcess()]);
    const operator = new ApiClient(`http://127.0.0.1:${apiPort}`, ROOT_TOKEN);
    const tenant = await operator.post('/v1/tenants', { name: 'Crash shop' });
    assert.equal(tenant.status, 201);
    const owner = new ApiClient(`http://127.0.0.1:${apiPort}`, tenant.body.token);
    const store = await owner.post('/v1/stores', { code: 'MAIN', name: 'Main' });
    const sku = await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'piece', price: 300 });
    const initialStock = 1_000_000;
    assert.equal((await owner.post(`/v1/stores/${store.body.id}/stock/receipts`, { items: [{ sku_id: sku.body.id, quantity: initialStock }] })).status, 201);

    const attempts: Attempt[] = [];
    const newAttempt = (kind: Kind): Attempt => {
      const attempt: Attempt =
        kind === 'sale'
          ? {
              kind,
              key: `sale-${randomUUID()}`,
              path: '/v1/sales',
              body: { store_id: store.body.id, payment_method: 'cash', items: [{ sku_id: sku.body.id, quantity: 1 + Math.floor(Math.random() * 3), unit_price: 300 }] },
            }
          : {
              kind,
              key: `order-${randomUUID()}`,
              path: '/v1/orders',
              body: {
                store_id: store.body.id,
                lines: [{ sku_id: sku.body.id, quantity: 2 }],
                shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100', country: 'PT' },
                payment_reference: `pay-${randomUUID().slice(0, 8)}`,
              },
            };
      attempts.push(attempt);
      return attempt;
    };
    /** Sends once; false when the API could not be reached (the caller backs off). */
    const send = async (attempt: Attempt): Promise<boolean> => {
      try {
        const response = await owner.post(attempt.path, attempt.body, { idempotencyKey: attempt.key });
        if (response.status >= 200 && response.status < 300) {
          const id = response.body.id as string;
          if (attempt.acknowledged) assert.equal(id, attempt.acknowledged.id, `key ${attempt.key} answered with another record`);
          attempt.acknowledged ??= { status: response.status, id };
        }
        return true;
      } catch {
        // connection refused or reset: the API is down; retried later with the same key
        return false;
      }
    };

    // Load: 8 clients, 3 sales for every order, while the chaos loop kills and restarts.
    running = true;
    const clients = Array.from({ length: 8 }, async (_, client) => {
      let n = 0;
      while (running) {
        if (!(await send(newAttempt(n++ % 4 === client % 4 ? 'order' : 'sale')))) await sleep(200);
      }
    });
    const rounds = 4;
    for (let round = 0; round < rounds; round++) {
      await sleep(400 + Math.random() * 1200);
      const victim = ['api', 'worker', 'both'][round % 3];
      if (victim !== 'worker') await kill9(api);
      if (victim !== 'api') await kill9(worker);
      await sleep(100 + Math.random() * 300);
      await Promise.all([victim !== 'worker' ? startApi() : undefined, victim !== 'api' ? startWorkerProcess() : undefined]);
    }
    await sleep(800);
    running = false;
    await Promise.all(clients);

    // Every key is retried with the same body: the acknowledged ones replay the same record, the rest complete now.
    const counts = async () =>
      (
        await t.admin.query(`SELECT (SELECT count(*) FROM sales)::int AS sales, (SELECT count(*) FROM orders)::int AS orders`)
      ).rows[0] as { sales: number; orders: number };
    for (let pass = 0; pass < 5 && attempts.some((attempt) => !attempt.acknowledged); pass++) {
      for (const attempt of attempts.filter((a) => !a.acknowledged)) await send(attempt);
      if (attempts.some((attempt) => !attempt.acknowledged)) await sleep(500);
    }
    assert.ok(attempts.every((attempt) => attempt.acknowledged), 'every key eventually succeeds');
    const afterRetries = await counts();
    for (const attempt of attempts) await send(attempt); // a second full replay: nothing new
    assert.deepEqual(await counts(), afterRetries);

    // Every acknowledged operation exists exactly once, under its key.
    const sales = attempts.filter((attempt) => attempt.kind === 'sale');
    const orders = attempts.filter((attempt) => attempt.kind === 'order');
    assert.ok(sales.length > 20 && orders.length > 5, `enough load: ${sales.length} sales, ${orders.length} orders`);
    assert.deepEqual(afterRetries, { sales: sales.length, orders: orders.length });
    const saleIds = new Set((await t.admin.query<{ id: string }>('SELECT id FROM sales')).rows.map((row) => row.id));
    assert.ok(sales.every((attempt) => saleIds.has(attempt.acknowledged!.id)));
    const keyed = await t.admin.query(`SELECT idempotency_key, count(*)::int AS n FROM operations WHERE idempotency_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1`);
    assert.deepEqual(keyed.rows, []);
    const sold = sales.reduce((sum, attempt) => sum + (attempt.body as { items: Array<{ quantity: number }> }).items[0]!.quantity, 0);
    const stock = await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [store.body.id, sku.body.id]);
    assert.equal(stock.rows[0].quantity, initialStock - sold);

    // No order stuck after recovery, none duplicated at the provider.
    try {
      await waitFor(
        'every order past submitting',
        async () => (await t.admin.query(`SELECT count(*)::int AS n FROM orders WHERE status IN ('pending', 'submitting')`)).rows[0].n === 0,
        60_000,
        250,
      );
    } catch (error) {
      const stuck = await t.admin.query(
        `SELECT o.id, o.status, o.status_changed_at, o.submit_attempts, o.recoveries, o.last_error, now() AS now FROM orders o WHERE status IN ('pending', 'submitting') LIMIT 5`,
      );
      const jobs = await t.admin.query(`SELECT task_identifier, key, locked_by, locked_at, run_at, attempts, last_error FROM graphile_worker.jobs LIMIT 20`);
      throw new Error(
        `${(error as Error).message}\nworker alive: ${worker?.exitCode === null}\nstuck: ${JSON.stringify(stuck.rows, null, 1)}\njobs: ${JSON.stringify(jobs.rows, null, 1)}\noutput: ${output.slice(-30).join('')}`,
      );
    }
    const statuses = (await t.admin.query(`SELECT status, count(*)::int AS n FROM orders GROUP BY 1`)).rows;
    assert.ok(statuses.every((row: { status: string }) => ['submitted', 'processing', 'completed'].includes(row.status)), JSON.stringify(statuses));
    const perReference = new Map<string, number>();
    for (const order of sim.orders.values()) perReference.set(order.reference, (perReference.get(order.reference) ?? 0) + 1);
    assert.equal(perReference.size, orders.length);
    assert.ok([...perReference.values()].every((n) => n === 1), 'one provider order per order');

    // The checker finds nothing.
    await sleep(500);
    const run = await runChecksAsOwner(t.admin, allChecks, { ordersStuckSeconds: 60 }, testCheckLog);
    assert.deepEqual(run.findings, []);
  });
});
