/**
 * How long a 1,000-line stock count (POST /v1/stores/{id}/stock/counts) and
 * the largest receipt (1,000 lines, POST …/stock/receipts) hold the balance
 * rows they lock while the tills sell those SKUs: a sale waits at most 2 s
 * for a row (the lane's lock_timeout), then it is answered 503 (README "A row
 * held from outside").
 *
 *   npx tsx bench/countHold.ts
 *
 * On ONE durable PostgreSQL (embedded, default fsync / synchronous_commit, as
 * bench/sales.ts), the API as a child process. A shop of one store and 1,000
 * SKUs, received, with a history of sales (32 clients × 100, then ANALYZE)
 * and COUNT_BENCH_EARLIER_COUNTS counts of every SKU (default 1). Then, for each client count: closed-loop sales
 * of one random SKU of the 1,000 over HTTP for 2 s, the command posted, and
 * the sales going on for 2 s after it is answered. Printed: the command's
 * latency; the sales' p50 / p99 / max before the command and while it ran
 * (a sale overlapping the command's request); the sales answered 503 and any
 * other refusal. First, as a same-process reference: one bare transaction
 * locking 1,000 rows of a table of its own and updating each in its own
 * statement (the round trips a 1,000-line command cannot avoid), best of 3.
 *
 * Options (env): COUNT_BENCH_CLIENTS (default "0,8,16,32"; 0 = the command
 * alone), COUNT_BENCH_REPEATS (commands of each kind per client count,
 * default 2), COUNT_BENCH_EARLIER_COUNTS (counts of every SKU recorded
 * before measuring, default 1: a new count reads the earlier ones), DATABASE_URL (use that server; it must be durable).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { post, startApi } from './api.js';
import { openBenchDatabase, runBench, warmUp } from './database.js';

const CLIENTS = (process.env.COUNT_BENCH_CLIENTS ?? '0,8,16,32').split(',').map(Number);
const REPEATS = Number(process.env.COUNT_BENCH_REPEATS ?? 2);
const EARLIER_COUNTS = Number(process.env.COUNT_BENCH_EARLIER_COUNTS ?? 1);
const SKUS = 1_000;
const BEFORE_MS = 2_000;
const AFTER_MS = 2_000;

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!);
const ms = (value: number) => value.toFixed(value < 100 ? 1 : 0);

interface Sale {
  start: number;
  end: number;
  status: number;
}

async function main(): Promise<void> {
  const database = await openBenchDatabase('counthold');
  const admin = new pg.Pool({ connectionString: database.url, max: 10 });
  const rootToken = `bench-root-${randomUUID()}`;
  const api = await startApi(database.url, database.appUrl, rootToken);
  try {
    process.stdout.write(`database: ${database.durable}\ncores: ${os.cpus().length}, load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n\n`);

    // Reference: a bare transaction holding 1,000 rows, one UPDATE per row.
    await admin.query(`CREATE TABLE bench_rows (id integer PRIMARY KEY, quantity bigint NOT NULL DEFAULT 0)`);
    await admin.query(`INSERT INTO bench_rows (id) SELECT generate_series(1, ${SKUS})`);
    await admin.query(`VACUUM ANALYZE bench_rows`);
    let best = Number.POSITIVE_INFINITY;
    for (let run = 0; run < 3; run++) {
      const client = await admin.connect();
      try {
        const started = performance.now();
        await client.query('BEGIN');
        await client.query(`SELECT id FROM bench_rows ORDER BY id FOR UPDATE`);
        for (let id = 1; id <= SKUS; id++) await client.query('UPDATE bench_rows SET quantity = quantity + 1 WHERE id = $1', [id]);
        await client.query('COMMIT');
        best = Math.min(best, performance.now() - started);
      } finally {
        client.release();
      }
    }
    process.stdout.write(`reference: one transaction locking ${SKUS} rows, an UPDATE per row, commit: ${ms(best)} ms (best of 3)\n\n`);

    // The shop.
    const call = async (token: string, url: string, body: unknown) => {
      const response = await fetch(`${api.baseUrl}${url}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() }, body: JSON.stringify(body) });
      const json = (await response.json()) as any;
      if (response.status >= 300) throw new Error(`POST ${url}: ${response.status} ${JSON.stringify(json)}`);
      return json;
    };
    const tenant = await call(rootToken, '/v1/tenants', { name: `counthold-${randomUUID().slice(0, 8)}` });
    const token: string = tenant.token;
    const store: string = (await call(token, '/v1/stores', { code: 'C1', name: 'Counted' })).id;
    const skus: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, lane) => {
        for (let i = lane; i < SKUS; i += 8) skus[i] = (await call(token, '/v1/skus', { code: `K${i}`, name: `Item ${i}`, unit: 'piece', price: 100 })).id;
      }),
    );
    await call(token, `/v1/stores/${store}/stock/receipts`, { items: skus.map((sku) => ({ sku_id: sku, quantity: 100_000_000 })) });
    const saleBody = () => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: skus[Math.floor(Math.random() * SKUS)]!, quantity: 1, unit_price: 100 }] });
    await warmUp(
      () => post(api.baseUrl, '/v1/sales', token, saleBody()),
      () => admin.query('ANALYZE'),
    );
    let counted = 90_000_000;
    const countBody = () => ({ items: skus.map((sku) => ({ sku_id: sku, counted_quantity: counted++ })), reference: 'bench stocktake' });
    const receiptBody = () => ({ items: skus.map((sku) => ({ sku_id: sku, quantity: 5 })), reference: 'bench delivery' });
    for (let i = 0; i < EARLIER_COUNTS; i++) await call(token, `/v1/stores/${store}/stock/counts`, countBody());
    await admin.query('ANALYZE');
    process.stdout.write(`${EARLIER_COUNTS} count(s) of every SKU recorded before measuring\n\n`);

    const commands = [
      { name: `count of ${SKUS} SKUs`, path: `/v1/stores/${store}/stock/counts`, body: countBody },
      { name: `receipt of ${SKUS} lines`, path: `/v1/stores/${store}/stock/receipts`, body: receiptBody },
    ];
    process.stdout.write('| command | sale clients | command ms | status | sales before: n, p50, p99 ms | sales during: n, p50, p99, max ms | 503 | other refusals |\n| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |\n');
    for (const clients of CLIENTS) {
      for (const command of commands) {
        for (let repeat = 0; repeat < REPEATS; repeat++) {
          const sales: Sale[] = [];
          let stop = false;
          const tills = Array.from({ length: clients }, async () => {
            while (!stop) {
              const start = performance.now();
              const status = await post(api.baseUrl, '/v1/sales', token, saleBody());
              sales.push({ start, end: performance.now(), status });
            }
          });
          await new Promise((resolve) => setTimeout(resolve, clients === 0 ? 0 : BEFORE_MS));
          const sent = performance.now();
          const status = await post(api.baseUrl, command.path, token, command.body());
          const answered = performance.now();
          await new Promise((resolve) => setTimeout(resolve, clients === 0 ? 0 : AFTER_MS));
          stop = true;
          await Promise.all(tills);
          const latencies = (list: Sale[]) => list.map((sale) => sale.end - sale.start).sort((a, b) => a - b);
          const before = latencies(sales.filter((sale) => sale.status === 201 && sale.end < sent));
          const during = latencies(sales.filter((sale) => sale.start < answered && sale.end > sent));
          const refused = sales.filter((sale) => sale.status === 503).length;
          const other = sales.filter((sale) => sale.status !== 201 && sale.status !== 503).length;
          const row =
            `| ${command.name} | ${clients} | ${ms(answered - sent)} | ${status} | ` +
            (clients === 0 ? '– | – | – | – |' : `${before.length}, ${ms(percentile(before, 0.5))}, ${ms(percentile(before, 0.99))} | ${during.length}, ${ms(percentile(during, 0.5))}, ${ms(percentile(during, 0.99))}, ${ms(during.at(-1) ?? 0)} | ${refused} | ${other} |`);
          process.stdout.write(`${row}\n`);
          if (status !== 201) throw new Error(`${command.name} answered ${status}`);
        }
      }
    }

    const check = await admin.query(
      `SELECT count(*)::int AS mismatches FROM stock_balances b
       WHERE b.quantity <> (SELECT coalesce(sum(quantity_change), 0) FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id)`,
    );
    process.stdout.write(`\nafter the run: ${check.rows[0].mismatches} balance/ledger mismatches; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
    if (check.rows[0].mismatches !== 0) throw new Error('balances and ledger disagree');
  } finally {
    api.child.kill('SIGTERM');
    await new Promise((resolve) => api.child.once('exit', resolve));
    await admin.end();
    await database.close();
  }
}

runBench(main);
