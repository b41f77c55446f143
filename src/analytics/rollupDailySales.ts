import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, lockNamed } from '../core/db.js';

/**
 * When a sale happened: its till time if it came from an offline till (never
 * after it was recorded), else when it was recorded — the day its money is
 * booked on (saleJournalEntry). An online sale may name a till time too, but
 * it is booked when it is recorded: counting it on the time it names put its
 * revenue on a day whose money never saw it (any earlier day the till named).
 */
export const SALE_HAPPENED = "CASE WHEN s.source = 'offline' THEN LEAST(coalesce(s.client_created_at, s.created_at), s.created_at) ELSE s.created_at END";

/**
 * How long before its figures were computed a change to a day's sales may
 * still be one the rollup could not see: a sale's `created_at` (and a void's
 * `voided_at`) is its transaction's start, and it may commit after the
 * rollup read the sales. Far longer than any command may run
 * (statement_timeout 30 s, idle in transaction 60 s).
 */
export const ROLLUP_SETTLE = "interval '5 minutes'";

/**
 * The day a sale counts on: the store's day (store_day, in the store's time
 * zone — `st` is the sale's store row) of when it happened.
 */
export const SALE_DAY = `store_day(st.time_zone, ${SALE_HAPPENED})`;

/**
 * A bound on `s.created_at` for the sales of store-day `dayText` (an SQL date
 * expression), only to narrow the scan by index: a store's day begins at
 * most a day before the UTC day of the same date (no zone is 24 hours ahead
 * of UTC), and a sale happened no later than it was recorded. Which day a
 * sale is on is decided by SALE_DAY alone.
 */
export const recordedNoEarlierThan = (dayText: string): string => `((${dayText}) - 1)::timestamp AT TIME ZONE 'UTC'`;

export interface DailySalesRow {
  store_id: string;
  business_date: string;
  sales_count: number;
  voided_count: number;
  revenue: number;
  computed_at: Date;
}

/**
 * Recomputes one tenant's figures for one day (each store's own day, in its
 * time zone: SALE_DAY) from its sales, in one
 * statement (an upsert per store): running it again for the same day gives
 * the same rows, with a later void taken into account. A sale counts on the
 * day it happened: an offline sale's till time (`client_created_at`, never
 * later than when it reached us), else when it was recorded — so a sale
 * synced the morning after counts the day before, as its money does.
 */
export async function rollupDailySales(cmd: Command, businessDate: string): Promise<DailySalesRow[]> {
  // Runs for one tenant-day take turns, and each reads the sales in a
  // statement that starts once the previous run has committed: otherwise a
  // run that read the sales before a void, but wrote after a later run, left
  // its older figures over the newer ones (upsert in READ COMMITTED).
  await lockNamed(cmd.tx, `daily-sales-rollup/${cmd.tenantId}/${businessDate}`);
  const saleDay = sql.raw(SALE_DAY);
  // recordedNoEarlierThan(the day), with the day as a parameter
  const recordedSince = sql`((${businessDate}::date - 1)::timestamp AT TIME ZONE 'UTC')`;
  // A store-day that has figures but (no longer) any sale — figures an earlier
  // rule counted there — is recomputed too: to zeros.
  const rows = await all(
    cmd.tx,
    sql<DailySalesRow>`
      WITH st AS (
        -- the stores' zones, FOR SHARE: a change of a store's zone (which
        -- recomputes its figures) and this run take turns
        SELECT id, time_zone FROM stores WHERE tenant_id = ${cmd.tenantId} FOR SHARE
      ), day AS (
        SELECT s.store_id, count(*) AS sales_count, count(*) FILTER (WHERE s.status = 'voided') AS voided_count,
               coalesce(sum(s.total) FILTER (WHERE s.status <> 'voided'), 0) AS revenue
        FROM sales s JOIN st ON st.id = s.store_id
        WHERE s.tenant_id = ${cmd.tenantId}
          AND s.created_at >= ${recordedSince}
          AND ${saleDay} = ${businessDate}::date
        GROUP BY s.store_id
        UNION ALL
        SELECT r.store_id, 0, 0, 0 FROM daily_sales_rollups r JOIN st ON st.id = r.store_id
        WHERE r.tenant_id = ${cmd.tenantId} AND r.business_date = ${businessDate}::date
          AND NOT EXISTS (
            SELECT 1 FROM sales s
            WHERE s.tenant_id = r.tenant_id AND s.store_id = r.store_id
              AND s.created_at >= ${recordedSince}
              AND ${saleDay} = ${businessDate}::date)
      )
      INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op)
      SELECT ${cmd.tenantId}, gen_random_uuid(), day.store_id, ${businessDate}::date, day.sales_count, day.voided_count, day.revenue,
             ${cmd.opId}, ${cmd.opId}
      FROM day
      ON CONFLICT (tenant_id, store_id, business_date) DO UPDATE
        SET sales_count = EXCLUDED.sales_count, voided_count = EXCLUDED.voided_count, revenue = EXCLUDED.revenue,
            computed_by_op = EXCLUDED.computed_by_op, computed_at = now()
      RETURNING store_id, business_date::text AS business_date, sales_count, voided_count, revenue, computed_at`,
  );
  for (const row of rows) cmd.touch('daily_sales_rollups', `${row.store_id}/${businessDate}`, 'updated');
  cmd.audit({ subjectType: 'daily_sales_rollup', subjectId: businessDate, after: { stores: rows.length } });
  return rows;
}

export async function listDailySales(
  cmd: { tx: Command['tx'] },
  tenantId: string,
  storeId: string,
  from: string,
  to: string,
  after: string | undefined,
  limit: number,
): Promise<DailySalesRow[]> {
  return all(
    cmd.tx,
    sql<DailySalesRow>`
      SELECT store_id, business_date::text AS business_date, sales_count, voided_count, revenue, computed_at
      FROM daily_sales_rollups
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND business_date BETWEEN ${from}::date AND ${to}::date
        AND (${after ?? null}::date IS NULL OR business_date > ${after ?? null}::date)
      ORDER BY business_date
      LIMIT ${limit}`,
  );
}
