/**
 * Which integrity checks grow with a shop's history: every registered check
 * (src/integrity/registry.ts) timed on years of sales, as the nightly run
 * executes it (runChecksAsOwner: the owner's pool from createPool — the
 * service's statement_timeout (30 s), lock_timeout and jit=off —, one
 * read-only transaction per check, `storekeep.orders_stuck_seconds` set, the
 * check's SQL with $1 = NULL for every tenant).
 *
 *   npx tsx bench/integrityChecks.ts
 *   INTEGRITY_BENCH_DAYS=1095 INTEGRITY_BENCH_PER_DAY=1000 npx tsx bench/integrityChecks.ts
 *
 * The history (bench/salesHistory.ts, complete): one shop of DAYS × PER_DAY
 * sales and nine of 30 days × 100, each sale with its operation, audit
 * event, one line, its `sale` journal entry and two postings, and its stock
 * ledger row; the daily rollup caught up once. Nothing else (no transfer,
 * consignment, piece, order, settlement, return or void): the checks over
 * those tables read empty tables here.
 *
 * INTEGRITY_BENCH_CHECKS=name,name times only those checks.
 * INTEGRITY_BENCH_BEFORE=<dir> also times the checks of another checkout (a
 * directory holding its `src/`, e.g. `git archive <commit> src | tar -x -C
 * <dir>`, placed inside this checkout so that its imports find
 * node_modules) on the same history in the same run: per check, the
 * before's runs and this checkout's alternate, each row of the table twice
 * ("(before)" and this checkout's), and both findings must agree.
 *
 *   INTEGRITY_BENCH_DAYS=400 INTEGRITY_BENCH_CHECKS=sale_stock_matches_items,money_sale_posted \
 *     INTEGRITY_BENCH_BEFORE=scratch/before npx tsx bench/integrityChecks.ts
 *
 * Per check: the findings, the wall time (best of 2), and the rows its
 * backend read of the big tables (pg_stat_xact_user_tables differences
 * inside the check's transaction: rows by sequential scans + rows fetched by
 * index). A parallel plan's workers report their own reads, not counted
 * here: a table read by a parallel scan shows the leader's share only. A
 * check cut off by the statement timeout (what the nightly run reports as
 * check_failed) says so, and is run once more without the limit to show how
 * far past it is (its rows read are from that run). Then the checks over
 * a second are run once more for the big shop alone, as GET /v1/integrity
 * runs them (runChecksForTenant: the app role under row-level security,
 * $1 = the tenant).
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { CompiledQuery } from 'kysely';
import { inTenantTransaction, runCommand } from '../src/core/command.js';
import { createDb, createPool, STATEMENT_TIMEOUT_MS } from '../src/core/db.js';
import { catchUpDailySales } from '../src/analytics/catchUpDailySales.js';
import type { IntegrityCheck } from '../src/integrity/check.js';
import { allChecks } from '../src/integrity/registry.js';
import { checkSettingsOf } from '../src/integrity/runChecks.js';
import { loadConfig } from '../src/config.js';
import { openBenchDatabase, runBench } from './database.js';
import { historyTenants, writeSalesHistory } from './salesHistory.js';

const DAYS = Number(process.env.INTEGRITY_BENCH_DAYS ?? 1095);
const PER_DAY = Number(process.env.INTEGRITY_BENCH_PER_DAY ?? 1000);
const SMALL_TENANTS = 9;
const RUNS = Number(process.env.INTEGRITY_BENCH_RUNS ?? 2);
/** The checks slower than this (ms) in the every-tenant run are also run for the big shop alone, as GET /v1/integrity runs them. */
const TENANT_RUN_OVER_MS = Number(process.env.INTEGRITY_BENCH_TENANT_RUN_OVER_MS ?? 1000);
const ONLY = process.env.INTEGRITY_BENCH_CHECKS ? process.env.INTEGRITY_BENCH_CHECKS.split(',') : undefined;
const BEFORE = process.env.INTEGRITY_BENCH_BEFORE;
const BIG_TABLES = ['sales', 'sale_items', 'journal_entries', 'postings', 'stock_ledger', 'operations', 'events'] as const;

const TABLES_READ = `SELECT relname, (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::bigint AS rows
                     FROM pg_stat_xact_user_tables WHERE relname = ANY($1::text[])`;

type Read = Record<string, number>;

async function tablesRead(client: pg.PoolClient): Promise<Read> {
  const rows = (await client.query<{ relname: string; rows: string }>(TABLES_READ, [BIG_TABLES])).rows;
  return Object.fromEntries(rows.map((row) => [row.relname, Number(row.rows)]));
}

runBench(async () => {
  const database = await openBenchDatabase('integrity-checks');
  const admin = new pg.Pool({ connectionString: database.url, max: 2 });
  const appPool = createPool(database.appUrl, { max: 2, asAppRole: true });
  // As the worker's owner pool (src/jobs/worker.ts): the service's session settings, not the app role.
  const ownerPool = createPool(database.url, { max: 1, asAppRole: false, applicationName: 'storekeep-worker' });
  // The same, for the run without the limit: its client does not give up on a statement after DATABASE_ANSWER_TIMEOUT_MS either.
  const unlimitedPool = createPool(database.url, { max: 1, asAppRole: false, applicationName: 'storekeep-worker', answerTimeoutMs: 0 });
  const db = createDb(appPool);
  try {
    const tenants = historyTenants(DAYS, PER_DAY, SMALL_TENANTS);
    const started = Date.now();
    for (const tenant of tenants) await writeSalesHistory(admin, tenant, { complete: true });
    for (const table of ['operations', 'events', 'sales', 'sale_items', 'journal_entries', 'postings', 'stock_ledger', 'accounts', 'stock_balances']) {
      await admin.query(`VACUUM ANALYZE ${table}`);
    }
    const history = Number((await admin.query(`SELECT count(*) AS n FROM sales`)).rows[0].n);
    process.stdout.write(`history: ${history} sales (${DAYS} days × ${PER_DAY} in one shop, ${SMALL_TENANTS} shops of 30 days × 100), written in ${Date.now() - started} ms\n`);

    const catchUpStarted = Date.now();
    for (const tenant of tenants) {
      await runCommand(
        db,
        { tenantId: tenant.id, principal: { kind: 'operator', name: 'bench' }, correlationId: randomUUID(), fingerprint: randomUUID() },
        { type: 'analytics.rollup' },
        async (cmd) => {
          await catchUpDailySales(cmd);
          return { status: 200, body: {} };
        },
      );
    }
    await admin.query('VACUUM ANALYZE daily_sales_rollups');
    process.stdout.write(`first catch-up of every tenant: ${Date.now() - catchUpStarted} ms\n`);

    const settings = checkSettingsOf(loadConfig({ LOG_LEVEL: 'silent' }));
    const sizes: Record<string, number> = {};
    for (const table of BIG_TABLES) sizes[table] = Number((await admin.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    process.stdout.write(`rows: ${BIG_TABLES.map((table) => `${table} ${sizes[table]}`).join(', ')}\n`);
    process.stdout.write(`statement_timeout ${STATEMENT_TIMEOUT_MS} ms; best of ${RUNS}\n\n`);
    process.stdout.write(`| check | findings | ms | ${BIG_TABLES.join(' | ')} |\n| --- | ---: | ---: |${BIG_TABLES.map(() => ' ---: |').join('')}\n`);

    const checks = ONLY ? allChecks.filter((check) => ONLY.includes(check.name)) : allChecks;
    const beforeChecks = BEFORE
      ? ((await import(pathToFileURL(path.resolve(BEFORE, 'src/integrity/registry.ts')).href)) as { allChecks: IntegrityCheck[] }).allChecks
      : undefined;
    const unlimited = new Map<string, number>();
    const results: Array<{ name: string; check: IntegrityCheck; ms: number; findings: number; timedOut: boolean }> = [];
    const measure = async (check: IntegrityCheck, name: string): Promise<number> => {
      let best = Infinity;
      let findings = 0;
      let read: Read = {};
      let timedOut = false;
      for (let run = 0; run < RUNS; run++) {
        const client = await ownerPool.connect();
        try {
          // What runChecksAsOwner runs, plus the two readings of what was read.
          await client.query('BEGIN READ ONLY');
          await client.query(`SELECT set_config('storekeep.orders_stuck_seconds', $1, true)`, [String(settings.ordersStuckSeconds)]);
          const before = await tablesRead(client);
          const at = process.hrtime.bigint();
          try {
            findings = (await client.query(check.sql, [null])).rowCount ?? 0;
          } catch (error) {
            if ((error as { code?: string }).code !== '57014') throw error;
            timedOut = true;
          }
          const ms = Number(process.hrtime.bigint() - at) / 1e6;
          if (timedOut) {
            await client.query('ROLLBACK');
            best = ms;
            break;
          }
          const after = await tablesRead(client);
          await client.query('COMMIT');
          if (ms < best) {
            best = ms;
            read = Object.fromEntries(BIG_TABLES.map((table) => [table, (after[table] ?? 0) - (before[table] ?? 0)]));
          }
        } finally {
          client.release();
        }
      }
      if (timedOut) {
        // How far past the limit: once more without it (the nightly run would not get this far).
        const client = await unlimitedPool.connect();
        try {
          await client.query('BEGIN READ ONLY');
          await client.query(`SET LOCAL statement_timeout = 0`);
          await client.query(`SELECT set_config('storekeep.orders_stuck_seconds', $1, true)`, [String(settings.ordersStuckSeconds)]);
          const before = await tablesRead(client);
          const at = process.hrtime.bigint();
          findings = (await client.query(check.sql, [null])).rowCount ?? 0;
          unlimited.set(name, Number(process.hrtime.bigint() - at) / 1e6);
          const after = await tablesRead(client);
          await client.query('COMMIT');
          read = Object.fromEntries(BIG_TABLES.map((table) => [table, (after[table] ?? 0) - (before[table] ?? 0)]));
        } finally {
          client.release();
        }
      }
      results.push({ name, check, ms: best, findings, timedOut });
      const cells = BIG_TABLES.map((table) => String(read[table] ?? 0));
      const time = timedOut ? `cut off at ${best.toFixed(0)}; ${unlimited.get(name)!.toFixed(1)} without the limit` : best.toFixed(1);
      process.stdout.write(`| ${name} | ${findings} | ${time} | ${cells.join(' | ')} |\n`);
      return findings;
    };
    for (const check of checks) {
      const before = beforeChecks?.find((each) => each.name === check.name);
      const found = before ? await measure(before, `${check.name} (before)`) : undefined;
      const findings = await measure(check, check.name);
      if (found !== undefined && found !== findings) throw new Error(`${check.name}: ${findings} findings, ${found} before`);
    }
    const slowness = (result: { name: string; ms: number; timedOut: boolean }) => (result.timedOut ? unlimited.get(result.name)! : result.ms);
    const total = results.reduce((sum, result) => sum + slowness(result), 0);
    const worst = [...results].sort((a, b) => slowness(b) - slowness(a)).slice(0, 8);
    process.stdout.write(`\nall ${results.length} checks${BEFORE ? ' (each before and after)' : ''}: ${(total / 1000).toFixed(1)} s (sum of best times)\n`);
    process.stdout.write(`slowest: ${worst.map((result) => `${result.name} ${(slowness(result) / 1000).toFixed(2)} s${result.timedOut ? ' (cut off at the limit)' : ''}`).join(', ')}\n`);

    // GET /v1/integrity for the big shop: the same statements as the app role
    // under row-level security, $1 = the tenant (runChecksForTenant), once
    // each, for the slowest checks above.
    process.stdout.write(`\nGET /v1/integrity for the big shop (app role, $1 = its tenant), the checks over ${TENANT_RUN_OVER_MS} ms above, one run each:\n\n| check | findings | ms |\n| --- | ---: | ---: |\n`);
    for (const result of results.filter((each) => slowness(each) > TENANT_RUN_OVER_MS)) {
      const check = result.check;
      const at = process.hrtime.bigint();
      let cell: string;
      try {
        const rows = await inTenantTransaction(db, tenants[0]!.id, async (tx) => {
          await tx.executeQuery(CompiledQuery.raw(`SELECT set_config('storekeep.orders_stuck_seconds', $1, true)`, [String(settings.ordersStuckSeconds)]));
          return (await tx.executeQuery(CompiledQuery.raw(check.sql, [tenants[0]!.id]))).rows.length;
        });
        cell = `${rows} | ${(Number(process.hrtime.bigint() - at) / 1e6).toFixed(1)}`;
      } catch (error) {
        if ((error as { code?: string }).code !== '57014') throw error;
        cell = `— | cut off at ${(Number(process.hrtime.bigint() - at) / 1e6).toFixed(0)}`;
      }
      process.stdout.write(`| ${result.name} | ${cell} |\n`);
    }
    process.stdout.write(`\nhistory: ${history} sales; ${database.durable}\n`);
  } finally {
    await db.destroy();
    await ownerPool.end();
    await unlimitedPool.end();
    await admin.end();
    await database.close();
  }
});
