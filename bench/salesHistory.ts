/**
 * A long sales history written straight into the tables (as a replica: no
 * trigger or foreign-key check runs), for the benches that measure what
 * reads it: bench/rollupStaleness.ts and bench/integrityChecks.ts.
 *
 * One tenant per entry, each with one store (UTC); `days` × `perDay` sales,
 * spread from 08:00 to 20:00 UTC over the last `days` days, receipt numbers
 * 1..n, cash, totals 100..999 cents, each with its `sale` journal entry.
 *
 * `complete: false` (the rollup bench): one operation for the whole history,
 * and nothing else — no item, posting, stock ledger row or audit event.
 * `complete: true` (the integrity bench): what a sale made by POST /v1/sales
 * leaves behind, so that a consistent history gives no finding: an operation
 * and its audit event per sale, one line (one piece of one SKU), the entry's
 * two postings (the store's cash drawer, its sales revenue) with the
 * accounts' totals, and a stock ledger row per sale after one opening
 * adjustment (balance 0 at the end, running totals exact). Its ids are
 * time-ordered v7 (PostgreSQL 18's uuidv7, shifted to each sale's time), as
 * the app's; the rollup bench's are random v4, as they were measured.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';

export interface HistoryTenant {
  id: string;
  store: string;
  /** The operation of the history's set-up (and, when not complete, of every sale). */
  op: string;
  days: number;
  perDay: number;
}

/** `count` small tenants (30 days × 100) after one big one (`days` × `perDay`). */
export function historyTenants(days: number, perDay: number, smallTenants: number): HistoryTenant[] {
  return Array.from({ length: 1 + smallTenants }, (_, index) => ({
    id: randomUUID(),
    store: randomUUID(),
    op: randomUUID(),
    days: index === 0 ? days : 30,
    perDay: index === 0 ? perDay : 100,
  }));
}

/** The `created_at` of sale number n (1-based) of a history of $4 days × $5 a day. */
const CREATED_AT = `date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => $4::int - (n - 1) / $5::int)
                      + make_interval(secs => 8 * 3600 + ((n - 1) % $5::int) * (12 * 3600 / $5::int))`;

export async function writeSalesHistory(admin: pg.Pool, tenant: HistoryTenant, options: { complete: boolean }): Promise<void> {
  const client = await admin.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query(`INSERT INTO tenants (id, name) VALUES ($1, $2)`, [tenant.id, `bench ${tenant.id.slice(0, 8)}`]);
    await client.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'bench.history', 'bench', 'bench')`, [tenant.id, tenant.op]);
    await client.query(`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES ($1, $2, 'S', 'Shop', $3)`, [tenant.id, tenant.store, tenant.op]);
    const sales = tenant.days * tenant.perDay;
    if (!options.complete) {
      await client.query(
        `WITH sale AS (
           INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, total, op_id, created_at)
           SELECT $1, gen_random_uuid(), $2, n, 'cash', 100 + n % 900, $3, ${CREATED_AT}
           FROM generate_series(1, $4::int * $5::int) n
           RETURNING tenant_id, id, store_id, op_id, created_at
         )
         INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id, created_at)
         SELECT tenant_id, gen_random_uuid(), 'sale', store_id, (created_at AT TIME ZONE 'UTC')::date, 'sale', id, op_id, created_at FROM sale`,
        [tenant.id, tenant.store, tenant.op, tenant.days, tenant.perDay],
      );
    } else {
      const sku = randomUUID();
      const drawer = randomUUID();
      const revenue = randomUUID();
      const params = [tenant.id, tenant.store, tenant.op, tenant.days, tenant.perDay];
      await client.query(
        // Ids as the app makes them (src/core/ids.ts): v7, time-ordered — here
        // by the sale's time, so each table's primary key is in the order its
        // rows were written, as in a real history (random v4 ids would make
        // every walk in key order a random read of the table).
        `CREATE TEMP TABLE bench_history ON COMMIT DROP AS
         SELECT n, uuidv7(c.created_at - now()) AS sale_id, uuidv7(c.created_at - now()) AS op_id, uuidv7(c.created_at - now()) AS entry_id,
                uuidv7(c.created_at - now()) AS item_id, (100 + n % 900)::bigint AS total, c.created_at
         FROM generate_series(1, $4::int * $5::int) n
         CROSS JOIN LATERAL (SELECT ${CREATED_AT} AS created_at) c
         WHERE $1::uuid IS NOT NULL AND $2::uuid IS NOT NULL AND $3::uuid IS NOT NULL`,
        params,
      );
      await client.query(`INSERT INTO events (tenant_id, op_id, type, actor, correlation_id) VALUES ($1, $2, 'bench.history', 'bench', 'bench')`, [tenant.id, tenant.op]);
      await client.query(`INSERT INTO skus (tenant_id, id, code, name, unit, price, op_id) VALUES ($1, $2, 'P', 'Piece', 'piece', 100, $3)`, [tenant.id, sku, tenant.op]);
      await client.query(
        `INSERT INTO accounts (tenant_id, id, key, kind, store_id, balance, debit_total, credit_total, op_id)
         SELECT $1, a.id, 'store/' || $2::uuid::text || '/' || a.kind, a.kind, $2::uuid, a.sign * t.sum, CASE WHEN a.sign > 0 THEN t.sum ELSE 0 END, CASE WHEN a.sign < 0 THEN t.sum ELSE 0 END, $3
         FROM (SELECT coalesce(sum(total), 0)::bigint AS sum FROM bench_history) t
         CROSS JOIN (VALUES ($4::uuid, 'cash_drawer', 1), ($5::uuid, 'sales_revenue', -1)) a (id, kind, sign)`,
        [tenant.id, tenant.store, tenant.op, drawer, revenue],
      );
      await client.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) VALUES ($1, $2, $3, 0)`, [tenant.id, tenant.store, sku]);
      await client.query(
        `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $5, 'adjustment', 'bench opening stock', now() - make_interval(days => $6::int + 1))`,
        [tenant.id, tenant.store, sku, tenant.op, sales, tenant.days],
      );
      await client.query(
        `INSERT INTO operations (tenant_id, id, type, actor, correlation_id, store_id, created_at)
         SELECT $1, op_id, 'sale.create', 'bench', 'bench', $2, created_at FROM bench_history`,
        [tenant.id, tenant.store],
      );
      await client.query(
        `INSERT INTO events (tenant_id, op_id, type, actor, correlation_id, store_id, subject_type, subject_id, created_at)
         SELECT $1, op_id, 'sale.create', 'bench', 'bench', $2, 'sale', sale_id::text, created_at FROM bench_history ORDER BY n`,
        [tenant.id, tenant.store],
      );
      await client.query(
        `INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, total, op_id, created_at)
         SELECT $1, sale_id, $2, n, 'cash', total, op_id, created_at FROM bench_history ORDER BY n`,
        [tenant.id, tenant.store],
      );
      await client.query(
        `INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, op_id)
         SELECT $1, item_id, sale_id, 1, $2, 1, total, total, op_id FROM bench_history ORDER BY n`,
        [tenant.id, sku],
      );
      await client.query(
        `INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id, created_at)
         SELECT $1, entry_id, 'sale', $2, (created_at AT TIME ZONE 'UTC')::date, 'sale', sale_id, op_id, created_at FROM bench_history ORDER BY n`,
        [tenant.id, tenant.store],
      );
      await client.query(
        `INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id, created_at)
         SELECT $1, h.entry_id, a.id, a.sign * h.total, h.op_id, h.created_at
         FROM bench_history h CROSS JOIN (VALUES ($2::uuid, 1), ($3::uuid, -1)) a (id, sign) ORDER BY h.n, a.sign DESC`,
        [tenant.id, drawer, revenue],
      );
      await client.query(
        `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
         SELECT $1, $2, $3, op_id, -1, $4::bigint - n, 'sale', created_at FROM bench_history ORDER BY n`,
        [tenant.id, tenant.store, sku, sales],
      );
    }
    await client.query(`INSERT INTO store_receipt_counters (tenant_id, store_id, last_number) VALUES ($1, $2, $3)`, [tenant.id, tenant.store, sales]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
