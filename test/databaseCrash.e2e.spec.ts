import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { provisionAppLogin } from '../src/core/appLogin.js';
import { createLogger } from '../src/core/logger.js';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/core/embeddedPostgres.js';
import { migrate } from '../src/core/migrate.js';
import { allChecks } from '../src/integrity/registry.js';
import { runChecksAsOwner } from '../src/integrity/runChecks.js';
import { startProviderSim, type ProviderSim } from '../src/providerSim/providerSim.js';
import { testCheckLog } from './support/integrity.js';
import { freePort, postmasterPid, processAlive, spawnStorekeep } from './support/processes.js';
import { sleep, waitFor } from './support/wait.js';

/**
 * PostgreSQL itself dies under a mixed load — not the API or the worker
 * (test/crash.e2e.spec.ts kills those). This file starts a PostgreSQL of its
 * own (the run's shared server is never touched), the real API and worker
 * processes on it, and clients that send sales of one hot SKU (batched by the
 * group committer), voids, payments, transfers (request → approve → receive),
 * stock receipts, offline sync batches, field visits and orders, every
 * request with an Idempotency-Key, each retried with its key until it gets a
 * 2xx or a definite 4xx. Mid-load the server is shut down immediately
 * (SIGQUIT to the postmaster: `pg_ctl stop -m immediate`), and later killed
 * (SIGKILL to the postmaster, its backends left to notice); each time its
 * owner (this process, as a supervisor would) starts it again on the same
 * data folder. The API and worker are never restarted.
 *
 * Afterwards every acknowledged request exists exactly once, replaying every
 * key creates nothing, stock = ledger, accounts = postings, receipt numbers
 * are gapless per store, no sale is half-written, every integrity check is
 * clean, and the same API answers 2xx again — the hot SKU's group-commit lane
 * included.
 *
 * fsync is off (a process crash loses nothing the OS has; an OS crash is not
 * what this tests), synchronous_commit stays on: an acknowledged COMMIT is in
 * the WAL the restarted server replays.
 */
const ROOT_TOKEN = `db-crash-operator-${randomUUID()}`;
const SECRET = 'db-crash-webhook-secret';
const SHOP = { latitude: -1.286389, longitude: 36.817223 };
/** A request that gets no answer within this long is a finding (the promise is a 503 while the database is away). */
const ANSWER_WITHIN_MS = 20_000;
/** A request still not done (2xx or a definite 4xx) after this long is a finding. */
const DONE_WITHIN_MS = 60_000;

interface Response {
  status: number;
  body: any;
  replayed: boolean;
  retryAfter: string | null;
}

interface Call {
  label: string;
  key: string;
  method: 'POST';
  path: string;
  body: unknown;
  token: string;
  /** The final answer: a 2xx or a definite 4xx. */
  final?: Response;
}

describe('PostgreSQL crashes (immediate shutdown, then kill -9 of the postmaster) under a mixed load', { timeout: 150_000 }, () => {
  let dataDir: string;
  let server: EmbeddedServer;
  let ownerUrl: string;
  let admin: pg.Pool;
  let sim: ProviderSim;
  let apiPort: number;
  let api: ChildProcess;
  let worker: ChildProcess;
  const output: string[] = [];
  let running = false;

  const spawnCli = (command: string, appUrl: string) =>
    spawnStorekeep(command, { databaseUrl: ownerUrl, appUrl, port: apiPort, rootToken: ROOT_TOKEN, providerUrl: sim.url, webhookSecret: SECRET, jobMaxAttempts: 10 }, output);

  before(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-dbcrash-'));
    const serverLog = createLogger('warn', 'storekeep-dbcrash', { write: (line: string) => void output.push(`[postgres owner] ${line}`) });
    server = await startEmbeddedPostgres({ dataDir, logger: serverLog, settings: { fsync: 'off', full_page_writes: 'off' } });
    const control = new pg.Client(server.url);
    await control.connect();
    try {
      await control.query('CREATE DATABASE crash');
    } finally {
      await control.end();
    }
    const url = new URL(server.url);
    url.pathname = '/crash';
    ownerUrl = url.toString();
    await migrate(ownerUrl);
    const appUrl = await provisionAppLogin(ownerUrl, randomBytes(18).toString('base64url'));
    admin = new pg.Pool({ connectionString: ownerUrl, max: 4 });
    admin.on('error', () => undefined);
    sim = await startProviderSim({ secret: SECRET, faults: { latencyMs: 10, duplicateWebhooks: true } });
    apiPort = await freePort();
    sim.webhookUrl = `http://127.0.0.1:${apiPort}/v1/webhooks/fulfilment`;
    api = spawnCli('serve', appUrl);
    worker = spawnCli('worker', appUrl);
    await waitFor(
      'the API to be ready',
      async () => {
        if (api.exitCode !== null) throw new Error(`API exited ${api.exitCode}: ${output.join('')}`);
        return fetch(`http://127.0.0.1:${apiPort}/readyz`).then((r) => r.status === 200, () => false);
      },
      60_000,
      100,
    );
  });

  after(async () => {
    running = false;
    for (const child of [api, worker]) if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await sim?.stop();
    await admin?.end().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged request exactly once, every invariant, and the same API and worker serving again', async (context) => {
    const base = `http://127.0.0.1:${apiPort}`;
    /** Tally of every answer seen, for the failure message: "label status code". */
    const seen = new Map<string, number>();
    const note = (what: string) => seen.set(what, (seen.get(what) ?? 0) + 1);
    /** Answers that break the promise: a 5xx other than 503, no answer, a 4xx no request here deserves. */
    const broken: string[] = [];

    const send = async (call: Pick<Call, 'method' | 'path' | 'body' | 'token'> & { key?: string }): Promise<Response> => {
      const headers: Record<string, string> = { authorization: `Bearer ${call.token}`, 'content-type': 'application/json' };
      if (call.key !== undefined) headers['idempotency-key'] = call.key;
      const response = await fetch(`${base}${call.path}`, { method: call.method, headers, body: JSON.stringify(call.body ?? {}), signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
      const text = await response.text();
      return {
        status: response.status,
        body: text.length > 0 ? JSON.parse(text) : undefined,
        replayed: response.headers.get('idempotent-replayed') === 'true',
        retryAfter: response.headers.get('retry-after'),
      };
    };
    const isRetryable = (response: Response) => response.status === 503 || (response.status === 409 && response.body?.code === 'idempotency_key_in_flight');

    const calls: Call[] = [];
    /** Sends a call with its key until it gets a 2xx or a definite 4xx; `retryAlso` says a 2xx is not final yet (a sync batch with a sale refused for the moment). */
    const perform = async (label: string, token: string, path: string, body: unknown, retryAlso?: (response: Response) => boolean): Promise<Response> => {
      const call: Call = { label, key: `dbcrash-${label}-${randomUUID()}`, method: 'POST', path, body, token };
      calls.push(call);
      const deadline = Date.now() + DONE_WITHIN_MS;
      for (;;) {
        let response: Response | undefined;
        try {
          response = await send(call);
          note(`${label} ${response.status}${response.status >= 400 ? ` ${response.body?.code}` : ''}`);
          if (response.status === 503 && !(Number(response.retryAfter) > 0)) broken.push(`${label} ${path}: 503 without Retry-After`);
        } catch (error) {
          const what = (error as Error).name === 'TimeoutError' ? 'no answer' : `unreachable (${(error as Error).message})`;
          note(`${label} ${what}`);
          broken.push(`${label} ${path}: ${what}`);
        }
        if (response && !isRetryable(response) && !(response.status < 300 && retryAlso?.(response))) {
          if (response.status >= 300) broken.push(`${label} ${path}: ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`);
          call.final = response;
          return response;
        }
        if (Date.now() > deadline) throw new Error(`${label} ${path} not done after ${DONE_WITHIN_MS} ms (last: ${response?.status} ${JSON.stringify(response?.body).slice(0, 300)})`);
        await sleep(50 + Math.random() * 150);
      }
    };

    // Given a tenant with two stores, a hot SKU and another, a customer, an agent and a point of sale
    const operator = (path: string, body: unknown) => send({ method: 'POST', path, body, token: ROOT_TOKEN, key: randomUUID() });
    const tenant = await operator('/v1/tenants', { name: 'Crash shop' });
    assert.equal(tenant.status, 201, JSON.stringify(tenant.body));
    const ownerToken = tenant.body.token as string;
    const setup = async (path: string, body: unknown) => {
      const response = await send({ method: 'POST', path, body, token: ownerToken, key: `dbcrash-setup-${randomUUID()}` });
      assert.equal(response.status, 201, `${path}: ${JSON.stringify(response.body)}`);
      return response.body;
    };
    const storeA = (await setup('/v1/stores', { code: 'A', name: 'Front' })).id as string;
    const storeB = (await setup('/v1/stores', { code: 'B', name: 'Back' })).id as string;
    const hot = (await setup('/v1/skus', { code: 'HOT', name: 'Hot bread', unit: 'piece', price: 300 })).id as string;
    const other = (await setup('/v1/skus', { code: 'OIL', name: 'Oil', unit: 'piece', price: 450 })).id as string;
    const HOT_STOCK = 1_000_000;
    await setup(`/v1/stores/${storeA}/stock/receipts`, { items: [{ sku_id: hot, quantity: HOT_STOCK }, { sku_id: other, quantity: 100_000 }] });
    await setup(`/v1/stores/${storeB}/stock/receipts`, { items: [{ sku_id: other, quantity: 100_000 }] });
    const customer = (await setup('/v1/parties', { kind: 'customer', name: 'Ada' })).id as string;
    const agent = await setup('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [storeB] });
    const pointOfSale = (await setup('/v1/points-of-sale', { name: 'Kiosk', store_id: storeB, ...SHOP })).id as string;

    // When clients run a mixed load, each request retried with its key until done…
    const hotSale = () => ({ store_id: storeA, payment_method: 'cash', items: [{ sku_id: hot, quantity: 1 + Math.floor(Math.random() * 3), unit_price: 300 }] });
    const loops: Array<() => Promise<void>> = [
      // tills selling the hot SKU: one group-commit lane (the tenant's), batches of several sales
      ...Array.from({ length: 6 }, () => async () => void (await perform('sale', ownerToken, '/v1/sales', hotSale()))),
      // a sale and its void (the void runs alone in the same lane)
      async () => {
        const sale = await perform('sale', ownerToken, '/v1/sales', { store_id: storeA, payment_method: 'card', items: [{ sku_id: other, quantity: 2, unit_price: 450 }] });
        await perform('void', ownerToken, `/v1/sales/${sale.body.id}/void`, { reason: 'returned' });
      },
      async () => void (await perform('payment', ownerToken, '/v1/payments', { party_id: customer, store_id: storeA, method: 'cash', amount: 100 + Math.floor(Math.random() * 5_000) })),
      async () => {
        const requested = await perform('transfer.request', ownerToken, '/v1/transfers', { source_store_id: storeA, destination_store_id: storeB, items: [{ sku_id: other, quantity: 3 }] });
        await perform('transfer.approve', ownerToken, `/v1/transfers/${requested.body.id}/approve`, {});
        await perform('transfer.receive', ownerToken, `/v1/transfers/${requested.body.id}/receive`, {});
      },
      async () => void (await perform('receipt', ownerToken, `/v1/stores/${storeB}/stock/receipts`, { items: [{ sku_id: other, quantity: 10 }] })),
      // an offline till's queue: three hot sales, each with its own key; the batch again (same key) while any is refused for the moment
      async () => {
        const sales = Array.from({ length: 3 }, () => ({ idempotency_key: `dbcrash-synced-${randomUUID()}`, ...hotSale(), client_created_at: new Date().toISOString() }));
        await perform('sync', ownerToken, '/v1/sync/sales', { sales }, (response) => response.body.results.some((result: { status: number; body: { code?: string } }) => isRetryable({ status: result.status, body: result.body, replayed: false, retryAfter: null })));
      },
      async () => {
        const visit = await perform('visit.schedule', ownerToken, '/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agent.id, scheduled_for: new Date().toISOString() });
        await perform('visit.complete', agent.token, `/v1/visits/${visit.body.id}/complete`, { ...SHOP, lines: [{ sku_id: other, quantity: 1 }] });
      },
      async () =>
        void (await perform('order', ownerToken, '/v1/orders', {
          store_id: storeB,
          lines: [{ sku_id: other, quantity: 1 }],
          shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100', country: 'PT' },
          payment_reference: `pay-${randomUUID().slice(0, 8)}`,
        })),
    ];
    running = true;
    const clients = loops.map(async (loop) => {
      while (running) await loop();
    });

    // …and PostgreSQL dies under them twice, and its owner starts it again on the same data folder
    const crash = async (signal: 'SIGQUIT' | 'SIGKILL') => {
      const pid = postmasterPid(dataDir)!;
      process.kill(pid, signal);
      while (processAlive(pid)) await sleep(20);
      await waitFor('PostgreSQL to be started again', async () => {
        const next = postmasterPid(dataDir);
        return next !== undefined && next !== pid && (await admin.query('SELECT 1').then(() => true, () => false));
      }, 40_000, 100);
    };
    // (paced by the requests done, not by the clock: a slow machine gets the same load)
    const done = () => calls.filter((call) => call.final !== undefined).length;
    const moreDone = async (count: number) => {
      const target = done() + count;
      await waitFor(`${count} more requests done`, async () => done() >= target, 60_000, 50);
    };
    await moreDone(60);
    await crash('SIGQUIT');
    await moreDone(40);
    await crash('SIGKILL');
    await moreDone(40);
    running = false;
    await Promise.all(clients);

    // Then the API and the worker are the processes started before the crashes
    assert.equal(api.exitCode, null, `the API exited: ${output.slice(-30).join('')}`);
    const tally = [...seen].map(([what, n]) => `${what} ×${n}`).join(', ');
    context.diagnostic(tally);
    assert.deepEqual(broken, [], tally);
    assert.ok(seen.has('sale 503 service_unavailable'), `some of the load during the outages: ${tally}`);

    // And every acknowledged request exists exactly once: one operation per key, none without one
    const syncedKeys = calls.filter((c) => c.label === 'sync').flatMap((c) => (c.body as { sales: Array<{ idempotency_key: string }> }).sales.map((s) => s.idempotency_key));
    const expectedKeys = [...calls.map((c) => c.key), ...syncedKeys];
    const operationKeys = async () =>
      (await admin.query<{ key: string }>(`SELECT idempotency_key AS key FROM operations WHERE idempotency_key LIKE 'dbcrash-%' AND idempotency_key NOT LIKE 'dbcrash-setup-%' OR idempotency_key LIKE 'sync-batch:dbcrash-%'`)).rows.map((row) => row.key.replace(/^sync-batch:/, ''));
    const found = await operationKeys();
    const counted = new Map<string, number>();
    for (const key of found) counted.set(key, (counted.get(key) ?? 0) + 1);
    const expected = new Set(expectedKeys);
    assert.deepEqual(
      {
        missing: expectedKeys.filter((key) => !counted.has(key)),
        twice: [...counted].filter(([, n]) => n > 1).map(([key]) => key),
        unasked: found.filter((key) => !expected.has(key)),
      },
      { missing: [], twice: [], unasked: [] },
    );
    for (const call of calls) assert.ok(call.final!.status < 300, `${call.label} ${call.final!.status}`);
    // and one record each: a sale per sale key (sent alone or synced), a payment, a transfer, an order per request
    const records = await admin.query(
      `SELECT (SELECT count(*) FROM sales)::int AS sales, (SELECT count(*) FROM payments)::int AS payments,
              (SELECT count(*) FROM stock_transfers WHERE status = 'received')::int AS transfers, (SELECT count(*) FROM orders)::int AS orders`,
    );
    const sent = (label: string) => calls.filter((c) => c.label === label).length;
    assert.deepEqual(records.rows[0], { sales: sent('sale') + syncedKeys.length, payments: sent('payment'), transfers: sent('transfer.request'), orders: sent('order') });

    // Replaying every key answers the same record and writes nothing
    // (the worker and the provider's webhooks write operations of their own meanwhile: counted are the clients' keys' and the rows of their kinds)
    const rowCounts = async () =>
      (
        await admin.query(
          `WITH mine AS (SELECT id FROM operations WHERE idempotency_key LIKE 'dbcrash-%' OR idempotency_key LIKE 'sync-batch:dbcrash-%')
           SELECT (SELECT count(*) FROM mine)::int AS operations, (SELECT count(*) FROM events WHERE op_id IN (SELECT id FROM mine))::int AS events,
                  (SELECT count(*) FROM stock_ledger WHERE op_id IN (SELECT id FROM mine))::int AS ledger, (SELECT count(*) FROM idempotency_keys WHERE key LIKE 'dbcrash-%' OR key LIKE 'sync-batch:dbcrash-%')::int AS keys,
                  (SELECT count(*) FROM sales)::int AS sales, (SELECT count(*) FROM payments)::int AS payments, (SELECT count(*) FROM stock_transfers)::int AS transfers,
                  (SELECT count(*) FROM orders)::int AS orders`,
        )
      ).rows[0];
    const before = await rowCounts();
    for (const call of calls) {
      const again = await send(call);
      assert.equal(again.status, call.final!.status, `${call.label} replay: ${JSON.stringify(again.body)}`);
      if (call.label !== 'sync') assert.equal(again.body?.id, call.final!.body?.id, `${call.label} replay answers the same record`);
    }
    assert.deepEqual(await rowCounts(), before);

    // The hot SKU's stock is what was received less what the acknowledged sales took, and equals its ledger
    const hotSold =
      calls.filter((c) => c.label === 'sale' && (c.body as any).items[0].sku_id === hot).reduce((sum, c) => sum + (c.body as any).items[0].quantity, 0) +
      calls.filter((c) => c.label === 'sync').reduce((sum, c) => sum + (c.body as any).sales.reduce((s: number, sale: any) => s + sale.items[0].quantity, 0), 0);
    const stock = await admin.query(
      `SELECT b.quantity::int AS balance, (SELECT sum(quantity_change)::int FROM stock_ledger l WHERE l.store_id = b.store_id AND l.sku_id = b.sku_id) AS ledger
       FROM stock_balances b WHERE store_id = $1 AND sku_id = $2`,
      [storeA, hot],
    );
    assert.deepEqual(stock.rows[0], { balance: HOT_STOCK - hotSold, ledger: HOT_STOCK - hotSold });

    // Receipt numbers are gapless per store; no sale is half-written (lines, ledger rows, audit event, stored answer)
    const gaps = await admin.query(`SELECT store_id, count(*)::int AS n, max(receipt_number)::int AS last FROM sales GROUP BY 1 HAVING count(*) <> max(receipt_number)`);
    assert.deepEqual(gaps.rows, []);
    const halfWritten = await admin.query(
      `SELECT s.id FROM sales s
       WHERE NOT EXISTS (SELECT 1 FROM sale_items i WHERE i.sale_id = s.id)
          OR (SELECT count(*) FROM stock_ledger l WHERE l.op_id = s.op_id) <> (SELECT count(*) FROM sale_items i WHERE i.sale_id = s.id)
          OR NOT EXISTS (SELECT 1 FROM events e WHERE e.op_id = s.op_id)
          OR NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.op_id = s.op_id)`,
    );
    assert.deepEqual(halfWritten.rows, []);

    // The same API serves again: a burst on the hot SKU's lane, all 201 at once
    const burst = await Promise.all(Array.from({ length: 20 }, () => send({ method: 'POST', path: '/v1/sales', body: hotSale(), token: ownerToken, key: `after-${randomUUID()}` })));
    assert.deepEqual(burst.map((r) => r.status), burst.map(() => 201), JSON.stringify(burst.find((r) => r.status !== 201)?.body));
    assert.equal((await fetch(`${base}/readyz`)).status, 200);

    assert.equal(worker.exitCode, null, `the worker exited: ${output.filter((line) => line.startsWith("[worker]")).slice(-30).join("")}`);
    // The worker too: every order goes past submitting, none duplicated at the provider
    try {
      await waitFor('every order past submitting', async () => (await admin.query(`SELECT count(*)::int AS n FROM orders WHERE status IN ('pending', 'submitting')`)).rows[0].n === 0, 45_000, 200);
    } catch (error) {
      const stuck = await admin.query(`SELECT id, status, status_changed_at, submit_attempts, recoveries, last_error, now() AS now FROM orders WHERE status IN ('pending', 'submitting') LIMIT 5`);
      const jobs = await admin.query(`SELECT id, task_identifier, key, locked_by, locked_at, run_at, attempts, max_attempts, last_error FROM graphile_worker.jobs LIMIT 20`);
      const workerLines = output.filter((line) => line.startsWith('[worker]')).slice(-40).join('');
      throw new Error(`${(error as Error).message}\nstuck: ${JSON.stringify(stuck.rows, null, 1)}\njobs: ${JSON.stringify(jobs.rows, null, 1)}\nworker: ${workerLines}`);
    }
    const references = [...sim.orders.values()].map((order) => order.reference);
    assert.equal(new Set(references).size, references.length, 'one provider order per order');
    assert.equal(references.length, calls.filter((c) => c.label === 'order').length);

    // And every integrity check finds nothing
    const run = await runChecksAsOwner(admin, allChecks, { ordersStuckSeconds: 60 }, testCheckLog);
    assert.deepEqual(run.findings, []);
  });
});
