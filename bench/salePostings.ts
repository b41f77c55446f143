/**
 * What the money side costs the sale path: in-process group-commit sales on
 * ONE hot SKU (the sales bench's hardest case), on a durable embedded
 * PostgreSQL, in three variants measured back to back in one run:
 *
 *   1. price 0      — a sale with total 0 posts no journal entry (the sale path alone)
 *   2. priced       — the full path: sale + journal entry + 2 account upserts + deferred balance checks
 *   3. priced, balance triggers off — (2) without the double-entry checks
 *      (`journal_entry_balanced` at commit, `posting_entry_balanced` per statement)
 *
 * After a warm-up of 3,200 sales and ANALYZE (see bench/sales.ts).
 *
 *   npx tsx bench/salePostings.ts          (BENCH_SECONDS default 5, BENCH_CLIENTS default 64)
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { fingerprintRequest, type CommandInput } from '../src/core/command.js';
import { createDb, createPool } from '../src/core/db.js';
import { openBenchDatabase, runBench, warmUp } from './database.js';
import { GroupCommitter } from '../src/sales/groupCommit.js';
import type { SaleInput } from '../src/sales/sale.table.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);

async function main(): Promise<void> {
  const database = await openBenchDatabase('bench_sp');
  const url = new URL(database.url);
  const owner = new pg.Client(url.toString());
  const pool = createPool(database.appUrl, { max: 20, asAppRole: true });
  try {
    await owner.connect();
    const tenant = randomUUID();
    const op = randomUUID();
    const store = randomUUID();
    const sku = randomUUID();
    await owner.query(`INSERT INTO tenants (id, name) VALUES ($1, 'bench')`, [tenant]);
    await owner.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'bench.seed', 'bench', 'bench')`, [tenant, op]);
    await owner.query(`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES ($1, $2, 'B', 'Bench', $3)`, [tenant, store, op]);
    await owner.query(`INSERT INTO skus (tenant_id, id, code, name, unit, price, op_id) VALUES ($1, $2, 'HOT', 'Hot', 'piece', 100, $3)`, [tenant, sku, op]);
    await owner.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) VALUES ($1, $2, $3, 1000000000)`, [tenant, store, sku]);
    const settings = (await owner.query(`SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')`)).rows;

    const db = createDb(pool);
    const committer = new GroupCommitter(db);
    const inputOf = (body: SaleInput): CommandInput => ({
      tenantId: tenant,
      principal: { kind: 'token', tokenId: randomUUID(), tenantId: tenant, name: 'bench', role: 'owner', storeIds: null },
      correlationId: randomUUID(),
      idempotencyKey: randomUUID(),
      fingerprint: fingerprintRequest('POST', '/v1/sales', body),
      payload: body,
    });
    const measure = async (label: string, unitPrice: number) => {
      const latencies: number[] = [];
      let errors = 0;
      const warmupEnd = Date.now() + 500;
      const end = warmupEnd + SECONDS * 1000;
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          while (Date.now() < end) {
            const body: SaleInput = { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: unitPrice }] };
            const started = performance.now();
            const outcome = await committer.sale(inputOf(body), body, 'online');
            if (Date.now() < warmupEnd) continue;
            if (outcome.status !== 201) errors++;
            latencies.push(performance.now() - started);
          }
        }),
      );
      latencies.sort((a, b) => a - b);
      const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(1);
      const line = `| ${label} | ${CLIENTS} | ${Math.round(latencies.length / SECONDS)} | ${at(0.5)} | ${at(0.99)} | ${errors} |`;
      process.stdout.write(`${line}\n`);
      if (process.env.BENCH_DEBUG) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const stats = await owner.query(`SELECT relname, n_tup_upd, n_tup_hot_upd, n_dead_tup FROM pg_stat_user_tables WHERE relname IN ('accounts', 'stock_balances', 'store_receipt_counters')`);
        process.stdout.write(`${JSON.stringify(stats.rows)}\n`);
      }
    };
    await warmUp(
      () => {
        const body: SaleInput = { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] };
        return committer.sale(inputOf(body), body, 'online');
      },
      () => owner.query('ANALYZE'),
    );
    process.stdout.write(`${settings.map((s) => `${s.name}=${s.setting}`).join(', ')}; ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(2)}\n\n`);
    process.stdout.write('| variant (hot SKU, in-process group commit) | clients | sales/s | p50 ms | p99 ms | errors |\n| --- | --- | --- | --- | --- | --- |\n');
    await measure('price 0: no journal entry', 0);
    if (process.env.BENCH_DEBUG) await measure('price 0 again', 0);
    await measure('priced: sale + journal entry + balance checks', 100);
    await owner.query(`ALTER TABLE postings DISABLE TRIGGER posting_entry_balanced`);
    await owner.query(`ALTER TABLE journal_entries DISABLE TRIGGER journal_entry_balanced`);
    await measure('priced, balance checks off', 100);
    await owner.query(`ALTER TABLE postings ENABLE TRIGGER posting_entry_balanced`);
    await owner.query(`ALTER TABLE journal_entries ENABLE TRIGGER journal_entry_balanced`);
    await measure('priced again (checks on)', 100);
  } finally {
    await owner.end().catch(() => undefined);
    await pool.end();
    await database.close();
  }
}

runBench(main);
