/**
 * What the integrity check covered_sale_has_count_correction costs on a shop
 * whose every sale came from a till offline (its worst case: the check reads
 * the till-timed sales, and per stock ledger row of theirs the counts of the
 * store in the till's offline window).
 *
 *   npx tsx bench/coveredSaleCheck.ts
 *   COVERED_BENCH_DAYS=400 npx tsx bench/coveredSaleCheck.ts
 *
 * The history of bench/integrityChecks.ts (bench/salesHistory.ts, complete:
 * DAYS × PER_DAY sales of one shop, each with its stock ledger row), then
 * every sale made offline: source offline, client_created_at 0–119 s before
 * it was recorded; and a count of its SKU every day at 14:00 (variance 0,
 * held 2 s later). The sales made before a count and recorded after it
 * carry no count_correction row here: they are findings (a few a day). The
 * check is timed as the nightly run reads it ($1 = NULL) and as GET
 * /v1/integrity does (the tenant), best of RUNS, with the rows it read.
 */
import pg from 'pg';
import { allChecks } from '../src/integrity/registry.js';
import { openBenchDatabase, runBench } from './database.js';
import { historyTenants, writeSalesHistory } from './salesHistory.js';

const DAYS = Number(process.env.COVERED_BENCH_DAYS ?? 1095);
const PER_DAY = Number(process.env.COVERED_BENCH_PER_DAY ?? 1000);
const RUNS = Number(process.env.COVERED_BENCH_RUNS ?? 2);

runBench(async () => {
  const database = await openBenchDatabase('covered-check');
  const admin = new pg.Pool({ connectionString: database.url, max: 2 });
  try {
    const [tenant] = historyTenants(DAYS, PER_DAY, 0);
    let started = Date.now();
    await writeSalesHistory(admin, tenant!, { complete: true });
    const client = await admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(
        `UPDATE sales SET source = 'offline', client_created_at = created_at - make_interval(secs => receipt_number % 120) WHERE tenant_id = $1`,
        [tenant!.id],
      );
      const sku = (await client.query(`SELECT id FROM skus WHERE tenant_id = $1`, [tenant!.id])).rows[0].id as string;
      await client.query(
        `CREATE TEMP TABLE bench_counts ON COMMIT DROP AS
         SELECT d, gen_random_uuid() AS id, gen_random_uuid() AS op_id,
                date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => d) + interval '14 hours' AS counted_at
         FROM generate_series(0, $1::int) d`,
        [DAYS],
      );
      await client.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id, store_id) SELECT $1, op_id, 'stock.count', 'bench', 'bench', $2 FROM bench_counts`, [tenant!.id, tenant!.store]);
      await client.query(
        `INSERT INTO stock_counts (tenant_id, id, store_id, counted_at, op_id, held_at) SELECT $1, id, $2, counted_at, op_id, counted_at + interval '2 seconds' FROM bench_counts`,
        [tenant!.id, tenant!.store],
      );
      await client.query(
        `INSERT INTO stock_count_lines (tenant_id, count_id, sku_id, counted_quantity, expected_quantity, variance, quantity_after, op_id)
         SELECT $1, id, $2, 0, 0, 0, 0, op_id FROM bench_counts`,
        [tenant!.id, sku],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await admin.query('VACUUM ANALYZE sales, stock_ledger, stock_counts, stock_count_lines, sale_returns');
    const sizes = (await admin.query(`SELECT (SELECT count(*) FROM sales)::int AS sales, (SELECT count(*) FROM stock_ledger)::int AS ledger, (SELECT count(*) FROM stock_counts)::int AS counts`)).rows[0];
    process.stdout.write(`history: ${JSON.stringify(sizes)} in ${Math.round((Date.now() - started) / 1000)} s (${database.durable})\n`);

    const check = allChecks.find((candidate) => candidate.name === 'covered_sale_has_count_correction')!;
    for (const [label, tenantId] of [['every tenant ($1 = NULL)', null], ['the shop ($1 = tenant)', tenant!.id]] as const) {
      const times: number[] = [];
      let findings = 0;
      for (let run = 0; run < RUNS; run++) {
        started = performance.now();
        findings = (await admin.query(check.sql, [tenantId])).rowCount ?? 0;
        times.push(performance.now() - started);
      }
      const plan = (await admin.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) ${check.sql}`, [tenantId])).rows.map((row) => row['QUERY PLAN'] as string);
      process.stdout.write(`${label}: ${findings} findings, best ${Math.round(Math.min(...times))} ms (runs ${times.map((time) => Math.round(time)).join(', ')})\n${plan.join('\n')}\n`);
    }
  } finally {
    await admin.end();
    await database.close();
  }
});
