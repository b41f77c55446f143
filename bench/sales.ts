/**
 * `npm run bench`: the sale path against a pgbench-like reference, in one run,
 * on ONE durable PostgreSQL (embedded, default fsync / synchronous_commit /
 * full_page_writes — not the test settings).
 *
 *   1. reference: pgbench's built-in TPC-B-like transaction at scale 1 (the
 *      figure the issue quotes: 1 branch, 10 tellers, 100,000 accounts; three
 *      single-row durable UPDATEs, a SELECT and an INSERT per transaction, one
 *      statement per round trip like pgbench) — "the reference" of the ratio
 *      column is its best rate over the client counts; also, for comparison,
 *      single-row durable UPDATEs in autocommit (pgbench's simple-update
 *      shape) on 100,000 rows and on one hot row;
 *   2. the real sale path in-process (GroupCommitter.sale: a batch of sales
 *      planned together and written set-based), and one transaction per sale
 *      (runCommand → recordSale) for comparison;
 *   3. the real sale path over HTTP (the API as a child process, keep-alive
 *      connections from this process);
 *   at 1, 8, 32 and 64 closed-loop clients, on one hot SKU and on 100 SKUs
 *   across 10 stores. Prints sales/s, p50/p99 latency and the ratio to the
 *   reference, and writes the table to bench/last-run.md.
 *
 * The sale measurements start after a warm-up (3,200 sales, then ANALYZE;
 * see below) so they show a database past its first minute.
 *
 * Options (env): BENCH_SECONDS (per measurement, default 5),
 * BENCH_CLIENTS (default "1,8,32,64"), BENCH_BATCH_CAPS (group-commit batch caps
 * compared on the hot SKU at the largest client count, default "1,4,16"), DATABASE_URL (use that server instead
 * of the embedded one; it must be durable for the figures to mean anything).
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { fingerprintRequest, runCommand, type CommandInput } from '../src/core/command.js';
import { createDb, createPool, type Db } from '../src/core/db.js';
import { saleCommand } from '../src/sales/createSale.js';
import { GroupCommitter } from '../src/sales/groupCommit.js';
import type { SaleInput } from '../src/sales/sale.table.js';
import { post, startApi } from './api.js';
import { openBenchDatabase, warmUp } from './database.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = (process.env.BENCH_CLIENTS ?? '1,8,32,64').split(',').map(Number);
const BATCH_CAPS = (process.env.BENCH_BATCH_CAPS ?? '1,4,16').split(',').filter(Boolean).map(Number);

interface Measurement {
  name: string;
  clients: number;
  ops: number;
  errors: number;
  seconds: number;
  p50_ms: number;
  p99_ms: number;
}

/** The reference rate once measured (printed as a ratio after each later figure). */
const reference = { perSecond: 0 };

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!);

/** Closed loop: `clients` workers each run `op` back to back for SECONDS (after a short warm-up). */
async function measure(name: string, clients: number, op: (client: number) => Promise<boolean>): Promise<Measurement> {
  const warmupEnd = Date.now() + 500;
  const end = warmupEnd + SECONDS * 1000;
  const latencies: number[] = [];
  let errors = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      while (Date.now() < end) {
        const started = performance.now();
        const ok = await op(client);
        const now = Date.now();
        if (now < warmupEnd) continue;
        if (now >= end) break;
        if (ok) latencies.push(performance.now() - started);
        else errors++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const result = { name, clients, ops: latencies.length, errors, seconds: SECONDS, p50_ms: percentile(latencies, 0.5), p99_ms: percentile(latencies, 0.99) };
  process.stdout.write(
    `${name.padEnd(48)} ${String(clients).padStart(3)} clients  ${(result.ops / SECONDS).toFixed(0).padStart(6)} /s  p50 ${result.p50_ms.toFixed(2).padStart(7)} ms  p99 ${result.p99_ms.toFixed(2).padStart(7)} ms` +
      `${reference.perSecond ? `  ${(result.ops / SECONDS / reference.perSecond).toFixed(2).padStart(5)}× ref` : ''}${errors ? `  errors ${errors}` : ''}\n`,
  );
  return result;
}

interface Shop {
  tenantId: string;
  token: string;
  stores: string[];
  skus: string[];
}

/** A tenant with 10 stores and 100 SKUs (stocked everywhere) plus one hot store/SKU, through the API. */
async function setUpShop(baseUrl: string, rootToken: string): Promise<Shop> {
  const call = async (token: string, method: string, url: string, body: unknown) => {
    const response = await fetch(`${baseUrl}${url}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json = (await response.json()) as any;
    if (response.status >= 300) throw new Error(`${method} ${url}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  const tenant = await call(rootToken, 'POST', '/v1/tenants', { name: `bench-${randomUUID().slice(0, 8)}` });
  const token: string = tenant.token;
  const stores: string[] = [];
  for (let i = 0; i < 11; i++) stores.push((await call(token, 'POST', '/v1/stores', { code: `B${i}`, name: `Bench ${i}` })).id);
  const skus: string[] = [];
  for (let i = 0; i < 101; i++) skus.push((await call(token, 'POST', '/v1/skus', { code: `SKU${i}`, name: `Item ${i}`, unit: 'piece', price: 100 })).id);
  // stores[0] / skus[0]: the hot pair; stores 1..10 × skus 1..100: the spread
  await call(token, 'POST', `/v1/stores/${stores[0]}/stock/receipts`, { items: [{ sku_id: skus[0], quantity: 1_000_000_000 }] });
  for (const store of stores.slice(1)) {
    await call(token, 'POST', `/v1/stores/${store}/stock/receipts`, { items: skus.slice(1).map((sku) => ({ sku_id: sku, quantity: 100_000_000 })) });
  }
  return { tenantId: tenant.tenant.id, token, stores, skus };
}

function saleBody(shop: Shop, hot: boolean): SaleInput {
  const store = hot ? shop.stores[0]! : shop.stores[1 + Math.floor(Math.random() * 10)]!;
  const sku = hot ? shop.skus[0]! : shop.skus[1 + Math.floor(Math.random() * 100)]!;
  return { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] };
}

async function main(): Promise<void> {
  const database = await openBenchDatabase('bench');
  const databaseUrl = database.url;

  const admin = new pg.Pool({ connectionString: databaseUrl, max: 70 });
  const settings = (await admin.query(`SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'server_version')`)).rows;
  const rootToken = `bench-root-${randomUUID()}`;
  const api = await startApi(databaseUrl, database.appUrl, rootToken);
  const results: Measurement[] = [];
  let exitCode = 0;
  try {
    process.stdout.write(`database: ${database.durable}\n${settings.map((s) => `  ${s.name}=${s.setting}`).join('\n')}\n`);
    process.stdout.write(`cores: ${os.cpus().length}, load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n\n`);

    // 1. Reference: pgbench's TPC-B-like script at scale 1, statement by statement.
    await admin.query(`CREATE TABLE pgbench_branches (bid integer PRIMARY KEY, bbalance integer NOT NULL, filler char(88)) WITH (fillfactor = 100)`);
    await admin.query(`CREATE TABLE pgbench_tellers (tid integer PRIMARY KEY, bid integer NOT NULL, tbalance integer NOT NULL, filler char(84)) WITH (fillfactor = 100)`);
    await admin.query(`CREATE TABLE pgbench_accounts (aid integer PRIMARY KEY, bid integer NOT NULL, abalance integer NOT NULL, filler char(84)) WITH (fillfactor = 100)`);
    await admin.query(`CREATE TABLE pgbench_history (tid integer, bid integer, aid integer, delta integer, mtime timestamp, filler char(22))`);
    await admin.query(`INSERT INTO pgbench_branches SELECT 1, 0`);
    await admin.query(`INSERT INTO pgbench_tellers SELECT t, 1, 0 FROM generate_series(1, 10) t`);
    await admin.query(`INSERT INTO pgbench_accounts SELECT a, 1, 0, '' FROM generate_series(1, 100000) a`);
    await admin.query(`VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history`);
    const random = (low: number, high: number) => low + Math.floor(Math.random() * (high - low + 1));
    for (const clients of CLIENTS) {
      results.push(
        await measure(TPCB, clients, async () => {
          const aid = random(1, 100_000);
          const tid = random(1, 10);
          const delta = random(-5000, 5000);
          const client = await admin.connect();
          try {
            await client.query('BEGIN');
            await client.query(`UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid}`);
            await client.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid}`);
            await client.query(`UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid}`);
            await client.query(`UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = 1`);
            await client.query(`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, 1, ${aid}, ${delta}, CURRENT_TIMESTAMP)`);
            await client.query('END');
          } finally {
            client.release();
          }
          return true;
        }),
      );
    }

    reference.perSecond = referenceRate(results);
    process.stdout.write(`reference (best TPC-B-like rate): ${reference.perSecond.toFixed(0)} /s\n`);

    // Single-row durable updates in autocommit (pgbench simple-update shape).
    await admin.query(`CREATE TABLE bench_accounts (id integer PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)`);
    await admin.query(`INSERT INTO bench_accounts (id) SELECT generate_series(1, 100000)`);
    await admin.query(`VACUUM ANALYZE bench_accounts`);
    for (const clients of CLIENTS) {
      results.push(
        await measure('reference: 1-row UPDATE, 100k rows', clients, async () => {
          await admin.query('UPDATE bench_accounts SET balance = balance + 1 WHERE id = $1', [1 + Math.floor(Math.random() * 100_000)]);
          return true;
        }),
      );
    }
    for (const clients of CLIENTS) {
      results.push(
        await measure('reference: 1-row UPDATE, one hot row', clients, async () => {
          await admin.query('UPDATE bench_accounts SET balance = balance + 1 WHERE id = 1');
          return true;
        }),
      );
    }

    // 2. The sale path in-process.
    const shop = await setUpShop(api.baseUrl, rootToken);
    const tokenId = (await admin.query(`SELECT id FROM api_tokens WHERE tenant_id = $1`, [shop.tenantId])).rows[0].id;
    const pool = createPool(database.appUrl, { max: 20, asAppRole: true });
    const db: Db = createDb(pool);
    const committer = new GroupCommitter(db);
    const inputOf = (body: SaleInput): CommandInput => ({
      tenantId: shop.tenantId,
      principal: { kind: 'token', tokenId, tenantId: shop.tenantId, name: 'bench', role: 'owner', storeIds: null },
      correlationId: randomUUID(),
      idempotencyKey: randomUUID(),
      fingerprint: fingerprintRequest('POST', '/v1/sales', body),
      payload: body,
    });
    // Hot and spread sales, then ANALYZE (see warmUp).
    await warmUp(
      (client) => {
        const body = saleBody(shop, client % 2 === 0);
        return committer.sale(inputOf(body), body, 'online');
      },
      () => admin.query('ANALYZE'),
    );

    for (const hot of [true, false]) {
      for (const clients of CLIENTS) {
        results.push(
          await measure(`in-process group commit, ${hot ? 'hot SKU' : '100 SKUs × 10 stores'}`, clients, async () => {
            const body = saleBody(shop, hot);
            const outcome = await committer.sale(inputOf(body), body, 'online');
            return outcome.status === 201;
          }),
        );
      }
    }
    for (const clients of CLIENTS.filter((c) => c >= 8)) {
      results.push(
        await measure('in-process, one transaction per sale, hot SKU', clients, async () => {
          const body = saleBody(shop, true);
          try {
            const outcome = await runCommand(db, inputOf(body), { type: 'sale.create', storeId: body.store_id }, saleCommand(body, 'online'));
            return outcome.status === 201;
          } catch {
            return false;
          }
        }),
      );
    }
    // Batch size: the same hot-SKU group commit with smaller batch caps (the
    // default cap, 64, is measured above), at the largest client count.
    for (const maxBatch of BATCH_CAPS) {
      const capped = new GroupCommitter(db, { maxBatch });
      results.push(
        await measure(`in-process group commit, hot SKU, maxBatch ${maxBatch}`, Math.max(...CLIENTS), async () => {
          const body = saleBody(shop, true);
          const outcome = await capped.sale(inputOf(body), body, 'online');
          return outcome.status === 201;
        }),
      );
    }
    await db.destroy();

    // 3. The sale path over HTTP.
    for (const hot of [true, false]) {
      for (const clients of CLIENTS) {
        results.push(
          await measure(`HTTP POST /v1/sales, ${hot ? 'hot SKU' : '100 SKUs × 10 stores'}`, clients, async () => {
            const status = await post(api.baseUrl, '/v1/sales', shop.token, saleBody(shop, hot));
            return status === 201;
          }),
        );
      }
    }

    // The books must balance after all that.
    const check = await admin.query(
      `SELECT count(*)::int AS mismatches FROM stock_balances b
       WHERE b.quantity <> (SELECT coalesce(sum(quantity_change), 0) FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id)`,
    );
    const gaps = await admin.query(
      `SELECT count(*)::int AS gaps FROM store_receipt_counters c
       WHERE c.last_number <> (SELECT count(*) FROM sales s WHERE s.tenant_id = c.tenant_id AND s.store_id = c.store_id)`,
    );
    process.stdout.write(`\nafter the run: ${check.rows[0].mismatches} balance/ledger mismatches, ${gaps.rows[0].gaps} stores with receipt-number gaps\n`);
    if (check.rows[0].mismatches !== 0 || gaps.rows[0].gaps !== 0) exitCode = 1;

    const targets = verdict(results);
    process.stdout.write(`\n${targets.join('\n')}\n`);
    writeFileSync(path.join(root, 'bench/last-run.md'), [report(results, database.durable, settings), ...targets, ''].join('\n'));
    process.stdout.write(`\nwrote bench/last-run.md\n`);
  } finally {
    api.child.kill('SIGTERM');
    await new Promise((resolve) => api.child.once('exit', resolve));
    await admin.end();
    await database.close();
  }
  process.exit(exitCode);
}

const TPCB = 'reference: pgbench TPC-B-like, scale 1';
const referenceRate = (results: Measurement[]) => Math.max(...results.filter((r) => r.name === TPCB).map((r) => r.ops / r.seconds));

/**
 * Issue 3's targets against this run, read both ways the issue's sentence
 * allows: against the reference's best rate (the ratio column) and against
 * the reference at the same 64 clients.
 */
function verdict(results: Measurement[]): string[] {
  const clients = Math.max(...CLIENTS);
  const rate = (name: string) => {
    const found = results.find((r) => r.name === name && r.clients === clients);
    return found ? { perSecond: found.ops / found.seconds, p99: found.p99_ms } : undefined;
  };
  const best = referenceRate(results);
  const atClients = rate(TPCB)?.perSecond ?? Number.NaN;
  const line = (what: string, name: string, factor: number, p99Limit?: number) => {
    const measured = rate(name);
    if (!measured) return `${what}: not measured at ${clients} clients`;
    const [overBest, overSame] = [measured.perSecond / best, measured.perSecond / atClients];
    const met = overBest >= factor && overSame >= factor && (p99Limit === undefined || measured.p99 < p99Limit);
    const tail = p99Limit === undefined ? '' : `, p99 ${measured.p99.toFixed(1)} ms (target < ${p99Limit} ms)`;
    return `${what}: ${measured.perSecond.toFixed(0)}/s = ${overBest.toFixed(2)}× the reference's best, ${overSame.toFixed(2)}× the reference at ${clients} clients (target ≥ ${factor}×)${tail} — ${met ? 'met' : 'NOT met'}`;
  };
  return [
    `targets (issue 3), at ${clients} clients:`,
    `  ${line('hot SKU in-process', 'in-process group commit, hot SKU', 5, 20)}`,
    `  ${line('hot SKU over HTTP', 'HTTP POST /v1/sales, hot SKU', 2)}`,
  ];
}

function report(results: Measurement[], durable: string, settings: Array<{ name: string; setting: string }>): string {
  const referencePerSecond = referenceRate(results);
  const lines = [
    `# bench/sales.ts — last run ${new Date().toISOString()}`,
    '',
    `Database: ${durable} (${settings.map((s) => `${s.name}=${s.setting}`).join(', ')}). ${os.cpus().length} cores, load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`,
    `Reference (best rate of pgbench's TPC-B-like transaction, scale 1): ${referencePerSecond.toFixed(0)} /s. ${SECONDS} s per measurement after 0.5 s warm-up.`,
    '',
    '| measurement | clients | per s | p50 ms | p99 ms | × reference | errors |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.map(
      (r) => `| ${r.name} | ${r.clients} | ${(r.ops / r.seconds).toFixed(0)} | ${r.p50_ms.toFixed(2)} | ${r.p99_ms.toFixed(2)} | ${(r.ops / r.seconds / referencePerSecond).toFixed(2)} | ${r.errors} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
