/**
 * Balance listing at scale: 10,000 customers + 2,000 suppliers and 1,000,000
 * postings (500,000 entries × 2), then GET /v1/ledger/customers' query
 * (listPartyBalances) timed on the first page, a deep keyset page and the last
 * page, against the naive alternative (SUM over postings per party on every
 * request), with the plan printed.
 *
 *   npx tsx bench/ledger.ts                      embedded PostgreSQL 18 in a temp dir
 *   DATABASE_URL=postgres://… npx tsx bench/ledger.ts
 *
 * Seeding writes rows directly as the owner with triggers off
 * (session_replication_role = replica) for speed, then sets every account's
 * totals from its postings in one UPDATE — the state postJournal maintains.
 */
import os from 'node:os';
import pg from 'pg';
import { inTenantTransaction } from '../src/core/command.js';
import { createDb, createPool } from '../src/core/db.js';
import { openBenchDatabase, runBench } from './database.js';
import { listPartyBalances, type BalanceCursor } from '../src/money/listPartyBalances.js';

const CUSTOMERS = 10_000;
const SUPPLIERS = 2_000;
const ENTRIES = 500_000;
const RUNS = 200;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function time(label: string, runs: number, fn: () => Promise<unknown>): Promise<string> {
  for (let i = 0; i < 5; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  samples.sort((a, b) => a - b);
  const line = `| ${label} | ${runs} | ${percentile(samples, 50).toFixed(2)} | ${percentile(samples, 99).toFixed(2)} |`;
  process.stdout.write(`${line}\n`);
  return line;
}

async function main(): Promise<void> {
  const database = await openBenchDatabase('bench_ledger');
  const url = new URL(database.url);
  const appPool = createPool(database.appUrl, { max: 4, asAppRole: true });
  const owner = new pg.Client(url.toString());
  try {
    await owner.connect();
    const tenant = '01900000-0000-7000-8000-0000000000aa';
    const op = '01900000-0000-7000-8000-0000000000ab';
    const store = '01900000-0000-7000-8000-0000000000ac';
    const seeded = Date.now();
    await owner.query(`SET session_replication_role = replica`);
    await owner.query(`INSERT INTO tenants (id, name) VALUES ($1, 'bench')`, [tenant]);
    await owner.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'bench.seed', 'bench', 'bench')`, [tenant, op]);
    await owner.query(`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES ($1, $2, 'B', 'Bench', $3)`, [tenant, store, op]);
    await owner.query(
      `INSERT INTO parties (tenant_id, id, kind, name, op_id)
       SELECT $1, gen_random_uuid(), CASE WHEN g <= $3::int THEN 'customer' ELSE 'supplier' END, 'party ' || g, $2
       FROM generate_series(1, $3::int + $4::int) g`,
      [tenant, op, CUSTOMERS, SUPPLIERS],
    );
    await owner.query(
      `INSERT INTO accounts (tenant_id, id, key, kind, party_id, op_id)
       SELECT tenant_id, gen_random_uuid(), 'party/' || id, CASE kind WHEN 'customer' THEN 'receivable' ELSE 'payable' END, id, op_id FROM parties WHERE tenant_id = $1`,
      [tenant],
    );
    await owner.query(
      `INSERT INTO accounts (tenant_id, id, key, kind, store_id, op_id) VALUES ($1, gen_random_uuid(), 'store/' || $2 || '/cash_drawer', 'cash_drawer', $2::uuid, $3)`,
      [tenant, store, op],
    );
    // 500,000 entries over 90 % of the parties (10 % keep no postings), skewed so a few parties have many.
    await owner.query(
      `CREATE TEMP TABLE active AS
         SELECT row_number() OVER () AS n, a.id AS account_id, a.kind FROM accounts a
         WHERE a.tenant_id = $1 AND a.party_id IS NOT NULL AND random() < 0.9`,
      [tenant],
    );
    await owner.query(
      `CREATE TEMP TABLE seed_entries AS
         SELECT gen_random_uuid() AS id, (SELECT count(*) FROM active) AS total, g,
                (floor(power(random(), 2) * (SELECT count(*) FROM active)) + 1)::bigint AS pick,
                (floor(random() * 20000) - 8000)::bigint AS amount
         FROM generate_series(1, $1::int) g`,
      [ENTRIES],
    );
    await owner.query(`UPDATE seed_entries SET amount = 1 WHERE amount = 0`);
    await owner.query(
      `INSERT INTO journal_entries (tenant_id, id, kind, store_id, op_id) SELECT $1, id, 'payment', $2, $3 FROM seed_entries`,
      [tenant, store, op],
    );
    await owner.query(
      `INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id)
       SELECT $1::uuid, e.id, a.account_id, e.amount, $2::uuid FROM seed_entries e JOIN active a ON a.n = e.pick
       UNION ALL
       SELECT $1::uuid, e.id, (SELECT id FROM accounts WHERE tenant_id = $1::uuid AND kind = 'cash_drawer'), -e.amount, $2::uuid FROM seed_entries e`,
      [tenant, op],
    );
    await owner.query(
      `UPDATE accounts a SET balance = s.total, debit_total = s.debits, credit_total = s.credits
       FROM (SELECT account_id, sum(amount) AS total, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS debits,
                    coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS credits
             FROM postings WHERE tenant_id = $1 GROUP BY account_id) s
       WHERE a.tenant_id = $1 AND a.id = s.account_id`,
      [tenant],
    );
    await owner.query(`SET session_replication_role = origin`);
    await owner.query(`VACUUM ANALYZE accounts, parties, postings, journal_entries`);
    const counts = (await owner.query(`SELECT (SELECT count(*) FROM postings) AS postings, (SELECT count(*) FROM parties) AS parties`)).rows[0];
    process.stdout.write(`seeded ${counts.parties} parties, ${counts.postings} postings in ${((Date.now() - seeded) / 1000).toFixed(1)} s\n`);

    const db = createDb(appPool);
    const page = (cursor: BalanceCursor | undefined) => inTenantTransaction(db, tenant, (tx) => listPartyBalances(tx, tenant, 'customer', cursor, 51));
    const ordered = (await owner.query<{ balance: string; party_id: string }>(
      `SELECT balance, party_id FROM accounts WHERE tenant_id = $1 AND kind = 'receivable' ORDER BY balance DESC, party_id`,
      [tenant],
    )).rows;
    const cursorAt = (index: number): BalanceCursor => ({ outstanding: Number(ordered[index]!.balance), party_id: ordered[index]!.party_id });

    // Correctness at scale: walking every page returns every customer once, in order.
    let walked = 0;
    let cursor: BalanceCursor | undefined;
    for (;;) {
      const rows = await page(cursor);
      const items = rows.slice(0, 50);
      for (const [i, item] of items.entries()) {
        const expected = ordered[walked + i]!;
        if (item.party_id !== expected.party_id || item.outstanding !== Number(expected.balance)) throw new Error(`page mismatch at ${walked + i}`);
      }
      walked += items.length;
      if (rows.length <= 50) break;
      cursor = { outstanding: items[49]!.outstanding, party_id: items[49]!.party_id };
    }
    if (walked !== CUSTOMERS) throw new Error(`walked ${walked} customers, expected ${CUSTOMERS}`);
    process.stdout.write(`walked all ${walked} customers in ${Math.ceil(walked / 50)} pages: every row once, in order\n\n`);

    const lines = ['| query (limit 50) | runs | p50 ms | p99 ms |', '| --- | --- | --- | --- |'];
    process.stdout.write(`${lines.join('\n')}\n`);
    lines.push(await time('listPartyBalances, first page', RUNS, () => page(undefined)));
    lines.push(await time('listPartyBalances, page at row 5,000', RUNS, () => page(cursorAt(4_999))));
    lines.push(await time('listPartyBalances, last page', RUNS, () => page(cursorAt(CUSTOMERS - 20))));
    lines.push(
      await time('naive: SUM(postings) per party, sort, first page', 10, () =>
        owner.query(
          `SELECT p.id, coalesce(sum(x.amount) FILTER (WHERE x.amount > 0), 0) AS debit, coalesce(-sum(x.amount) FILTER (WHERE x.amount < 0), 0) AS credit,
                  coalesce(sum(x.amount), 0) AS outstanding
           FROM parties p JOIN accounts a ON a.tenant_id = p.tenant_id AND a.party_id = p.id
           LEFT JOIN postings x ON x.tenant_id = a.tenant_id AND x.account_id = a.id
           WHERE p.tenant_id = $1 AND p.kind = 'customer' GROUP BY p.id ORDER BY outstanding DESC, p.id LIMIT 51`,
          [tenant],
        ),
      ),
    );
    const plan = await inTenantTransaction(db, tenant, async (tx) => {
      const deep = cursorAt(4_999);
      const { sql } = await import('kysely');
      return (
        await sql<{ 'QUERY PLAN': string }>`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
          SELECT a.party_id, p.name, p.code, a.debit_total, a.credit_total, a.outstanding
          FROM (
            SELECT party_id, debit_total, credit_total, balance AS outstanding FROM accounts
            WHERE tenant_id = ${tenant} AND party_id IS NOT NULL AND kind = 'receivable'
              AND (false OR (balance <= ${deep.outstanding}::bigint AND (balance < ${deep.outstanding}::bigint OR party_id > ${deep.party_id}::uuid)))
            ORDER BY balance DESC, party_id LIMIT 51
          ) a
          JOIN parties p ON p.tenant_id = ${tenant} AND p.id = a.party_id
          ORDER BY a.outstanding DESC, a.party_id`.execute(tx)
      ).rows.map((row) => row['QUERY PLAN']);
    });
    process.stdout.write(`\nplan of a deep page:\n${plan.join('\n')}\n`);
    const version = (await owner.query(`SHOW server_version`)).rows[0].server_version;
    process.stdout.write(`\nPostgreSQL ${version}, ${os.cpus().length} cores\n`);
  } finally {
    await owner.end().catch(() => undefined);
    await appPool.end();
    await database.close();
  }
}

runBench(main);
