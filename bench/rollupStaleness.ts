/**
 * What the daily sales rollup's staleness work reads against a long history
 * (migration 0900): the integrity check daily_sales_rollup_stale and the
 * scheduled catch-up, after a night's changes, on a shop with years of sales.
 *
 *   npx tsx bench/rollupStaleness.ts
 *   ROLLUP_BENCH_DAYS=1095 ROLLUP_BENCH_PER_DAY=1000 npx tsx bench/rollupStaleness.ts
 *
 * The history is written straight into the tables (sales with money and
 * their `sale` journal entries, without postings or items: the rollup reads
 * neither), then caught up once. Then a night's changes: a day's new sales,
 * a till syncing a sale onto a day a year back, the void of a sale two years
 * back. Measured, each in its own transaction: the rows of `sales` read
 * (pg_stat_xact_user_tables: by sequential scans, and fetched through
 * indexes) and the wall time (best of 3) — for the stale check as it is, for
 * the check as it was before migration 0900 (it read every sale, kept here
 * only to compare), for daily_sales_rollup_present as it is (the store-days)
 * and as it was before 2026-12-07 (every sale), and for the catch-up.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { sql } from 'kysely';
import { runCommand } from '../src/core/command.js';
import { createDb, createPool, one } from '../src/core/db.js';
import { catchUpDailySales } from '../src/analytics/catchUpDailySales.js';
import { analyticsChecks, ROLLUP_STALE_AFTER } from '../src/analytics/integrity.js';
import { ROLLUP_SETTLE, SALE_DAY, saleDayOf } from '../src/analytics/rollupDailySales.js';
import { SALE_DAY_RULE } from '../src/analytics/catchUpDailySales.js';
import { openBenchDatabase, runBench } from './database.js';
import { historyTenants, writeSalesHistory } from './salesHistory.js';

const DAYS = Number(process.env.ROLLUP_BENCH_DAYS ?? 1095);
const PER_DAY = Number(process.env.ROLLUP_BENCH_PER_DAY ?? 1000);
const SMALL_TENANTS = 9;

/** daily_sales_rollup_stale before migration 0900: every sale against its store-day's figures (for comparison only). */
const STALE_BEFORE_0900 = `
  SELECT s.tenant_id, s.store_id::text || '/' || d.business_date::text AS subject, count(*) AS detail
  FROM sales s
  JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
  LEFT JOIN journal_entries je ON je.tenant_id = s.tenant_id AND je.subject_id = s.id AND je.kind = 'sale'
  CROSS JOIN LATERAL (SELECT ${saleDayOf('je.business_date')} AS business_date) d
  CROSS JOIN LATERAL (VALUES (s.created_at), (s.voided_at)) c (changed_at)
  LEFT JOIN daily_sales_rollups r ON r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.business_date = d.business_date
  WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
    AND c.changed_at < now() - ${ROLLUP_STALE_AFTER}
    AND (r.computed_at IS NULL OR c.changed_at >= r.computed_at - ${ROLLUP_SETTLE})
  GROUP BY s.tenant_id, s.store_id, d.business_date, r.computed_at`;

/** daily_sales_rollup_present before 2026-12-07: every sale of the caught-up tenants against its store-day's figures (for comparison only). */
const PRESENT_BY_EVERY_SALE = `
  SELECT s.tenant_id, s.store_id::text || '/' || d.business_date::text AS subject, count(*) AS detail
  FROM daily_sales_rollup_progress p
  JOIN sales s ON s.tenant_id = p.tenant_id
  JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
  CROSS JOIN LATERAL (SELECT ${SALE_DAY} AS business_date) d
  WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
    AND p.sale_day_rule >= ${SALE_DAY_RULE}
    AND (s.created_xid IS NULL OR pg_visible_in_snapshot(s.created_xid, p.changes_snapshot))
    AND NOT EXISTS (SELECT 1 FROM daily_sales_rollups r
                    WHERE r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.business_date = d.business_date)
  GROUP BY s.tenant_id, s.store_id, d.business_date, p.changes_through`;

/**
 * What this backend has counted of `sales` and not yet reported (reported at
 * most once a second, between transactions: the difference of two readings
 * in one transaction is what ran in between).
 */
const SALES_READ = `SELECT seq_scan::int AS seq_scans, seq_tup_read::int AS seq_rows, coalesce(idx_tup_fetch, 0)::int AS index_rows
                    FROM pg_stat_xact_user_tables WHERE relname = 'sales'`;

interface Read {
  seq_scans: number;
  seq_rows: number;
  index_rows: number;
}

const readBetween = (before: Read, after: Read): Read => ({
  seq_scans: after.seq_scans - before.seq_scans,
  seq_rows: after.seq_rows - before.seq_rows,
  index_rows: after.index_rows - before.index_rows,
});

runBench(async () => {
  const database = await openBenchDatabase('rollup-staleness');
  const admin = new pg.Pool({ connectionString: database.url, max: 4 });
  const appPool = createPool(database.appUrl, { max: 4, asAppRole: true });
  const db = createDb(appPool);
  try {
    // Tenants, each with one store (UTC) and one operation for its history.
    const tenants = historyTenants(DAYS, PER_DAY, SMALL_TENANTS);
    const started = Date.now();
    // The history as it was written then: no posting or item is read by the rollup, so none is made (nor checked).
    for (const tenant of tenants) await writeSalesHistory(admin, tenant, { complete: false });
    await admin.query('VACUUM ANALYZE sales');
    await admin.query('VACUUM ANALYZE journal_entries');
    const history = Number((await admin.query(`SELECT count(*) AS n FROM sales`)).rows[0].n);
    process.stdout.write(`history: ${history} sales (${DAYS} days × ${PER_DAY} in one shop, ${SMALL_TENANTS} shops of 30 days × 100), written in ${Date.now() - started} ms\n`);

    const catchUp = (tenantId: string) =>
      runCommand(
        db,
        { tenantId, principal: { kind: 'operator', name: 'bench' }, correlationId: randomUUID(), fingerprint: randomUUID() },
        { type: 'analytics.rollup' },
        async (cmd) => {
          const before = await one(cmd.tx, sql<Read>`${sql.raw(SALES_READ)}`);
          const at = Date.now();
          const result = await catchUpDailySales(cmd);
          const ms = Date.now() - at;
          return { status: 200, body: { days: result.days.length, ms, read: readBetween(before, await one(cmd.tx, sql<Read>`${sql.raw(SALES_READ)}`)) } };
        },
      );
    const firstStarted = Date.now();
    for (const tenant of tenants) await catchUp(tenant.id);
    process.stdout.write(`first catch-up of every tenant (reads all, once): ${Date.now() - firstStarted} ms\n`);

    // A night's changes in the big shop: a day of new sales, a sale synced onto a day a year back, a void of a sale two years back.
    const big = tenants[0]!;
    const changes = await admin.connect();
    try {
      await changes.query('BEGIN');
      const op = randomUUID();
      await changes.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'bench.night', 'bench', 'bench')`, [big.id, op]);
      await changes.query('SET LOCAL session_replication_role = replica');
      await changes.query(
        `WITH sale AS (
           INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, total, op_id, source, client_created_at)
           SELECT $1, gen_random_uuid(), $2, $4 + n + 1, 'cash', 250, $3, CASE WHEN n = 0 THEN 'offline' ELSE 'online' END,
                  CASE WHEN n = 0 THEN now() - interval '365 days' END
           FROM generate_series(0, $5::int) n
           RETURNING tenant_id, id, store_id, op_id, client_created_at
         )
         INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id)
         SELECT tenant_id, gen_random_uuid(), 'sale', store_id, (coalesce(client_created_at, now()) AT TIME ZONE 'UTC')::date, 'sale', id, op_id FROM sale`,
        [big.id, big.store, op, big.days * big.perDay, PER_DAY],
      );
      await changes.query('SET LOCAL session_replication_role = DEFAULT');
      await changes.query(
        `UPDATE sales SET status = 'voided', voided_by_op = $2, voided_at = now(), void_reason = 'bench'
         WHERE tenant_id = $1 AND store_id = $3 AND receipt_number = $4`,
        [big.id, op, big.store, (DAYS - 730) * PER_DAY + 1],
      );
      await changes.query('COMMIT');
    } finally {
      changes.release();
    }
    process.stdout.write(`changes since the catch-up: ${PER_DAY + 1} sales (one synced onto a day a year back), 1 void of a sale two years back\n`);

    const measure = async (query: string, params: unknown[]) => {
      let best = Infinity;
      let read: Read | undefined;
      let rows = 0;
      for (let i = 0; i < 3; i++) {
        const client = await admin.connect();
        try {
          await client.query('BEGIN READ ONLY');
          const before = (await client.query<Read>(SALES_READ)).rows[0]!;
          const at = process.hrtime.bigint();
          rows = (await client.query(query, params)).rowCount ?? 0;
          best = Math.min(best, Number(process.hrtime.bigint() - at) / 1e6);
          read = readBetween(before, (await client.query<Read>(SALES_READ)).rows[0]!);
          await client.query('COMMIT');
        } finally {
          client.release();
        }
      }
      return { ms: best, read: read!, rows };
    };
    const staleNow = analyticsChecks.find((check) => check.name === 'daily_sales_rollup_stale')!.sql;
    const presentNow = analyticsChecks.find((check) => check.name === 'daily_sales_rollup_present')!.sql;
    const results: Array<[string, { ms: number; read: Read; rows: number }]> = [
      ['daily_sales_rollup_stale (0900), every tenant', await measure(staleNow, [null])],
      ['daily_sales_rollup_stale (0900), the big shop', await measure(staleNow, [big.id])],
      ['daily_sales_rollup_stale before 0900, every tenant', await measure(STALE_BEFORE_0900, [null])],
      ['daily_sales_rollup_stale before 0900, the big shop', await measure(STALE_BEFORE_0900, [big.id])],
      ['daily_sales_rollup_present (store-days), every tenant', await measure(presentNow, [null])],
      ['daily_sales_rollup_present (store-days), the big shop', await measure(presentNow, [big.id])],
      ['daily_sales_rollup_present before 2026-12-07 (every sale), every tenant', await measure(PRESENT_BY_EVERY_SALE, [null])],
      ['daily_sales_rollup_present before 2026-12-07 (every sale), the big shop', await measure(PRESENT_BY_EVERY_SALE, [big.id])],
    ];
    const run = await catchUp(big.id);
    const body = run.body as { days: number; ms: number; read: Read };
    const idle = (await catchUp(big.id)).body as { days: number; ms: number; read: Read };
    process.stdout.write('\n| measurement | findings / days | sales rows read (seq scans, seq rows, index rows) | ms |\n| --- | ---: | --- | ---: |\n');
    for (const [name, result] of results) {
      process.stdout.write(`| ${name} | ${result.rows} | ${result.read.seq_scans}, ${result.read.seq_rows}, ${result.read.index_rows} | ${result.ms.toFixed(1)} |\n`);
    }
    process.stdout.write(`| catch-up of the big shop after the night | ${body.days} days | ${body.read.seq_scans}, ${body.read.seq_rows}, ${body.read.index_rows} | ${body.ms} |\n`);
    process.stdout.write(`| catch-up of the big shop, nothing new | ${idle.days} days | ${idle.read.seq_scans}, ${idle.read.seq_rows}, ${idle.read.index_rows} | ${idle.ms} |\n`);
    process.stdout.write(`\nhistory: ${history} sales; ${database.durable}\n`);
  } finally {
    await db.destroy();
    await admin.end();
    await database.close();
  }
});
