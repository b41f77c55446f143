import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, andIf, lockNamed } from '../core/db.js';

/**
 * When a sale happened: its till time if it came from an offline till (never
 * after it was recorded), else when it was recorded. An online sale may name a
 * till time too, but it is booked when it is recorded: counting it on the time
 * it names put its revenue on a day whose money never saw it (any earlier day
 * the till named). Only the day of a sale that has no journal entry (a total
 * of 0) is read from it: see SALE_DAY.
 *
 * LEAST skips a NULL (an offline sale without a till time: when it was
 * recorded). Written without coalesce, which PostgreSQL cannot prove
 * leakproof: under row-level security (the app role) a condition on an
 * expression holding one is never an index condition, and the recompute of a
 * day read the tenant's every sale instead of its own few by index
 * (sales_without_money_happened_idx, whose expression this must equal).
 */
export const SALE_HAPPENED = "CASE WHEN s.source = 'offline' THEN LEAST(s.client_created_at, s.created_at) ELSE s.created_at END";

/**
 * The store's day a sale happened on (a date, for a sale row aliased `s` and
 * its store row aliased `st`): store_day, in the store's time zone, of
 * SALE_HAPPENED. The day of a sale with no journal entry (SALE_DAY), and the
 * rule the figures had before SALE_DAY (migration 0880's one-time comparison).
 * Never before 0001-01-01, as a sale's money (postJournals): a till time early
 * on that day in UTC (accepted) is still 1 BC in a zone west of UTC — a day
 * the catch-up named '0001-12-31' (to_char drops the era), so the sale was
 * never counted and daily_sales_rollup_present reported it at every check.
 */
export const SALE_HAPPENED_DAY = `greatest(store_day(st.time_zone, ${SALE_HAPPENED}), DATE '0001-01-01')`;

/**
 * SALE_DAY given `entryDay`, an SQL expression for the sale's `sale` journal
 * entry's business_date (null when it has none) — for a query that joins the
 * entry instead of looking it up per sale. The one place the rule is written.
 */
export const saleDayOf = (entryDay: string): string => `coalesce(${entryDay}, ${SALE_HAPPENED_DAY})`;

/**
 * The business day a sale counts on in the daily figures (a date, for a sale
 * row aliased `s` and its store row aliased `st`): the day its money is booked
 * on — its `sale` journal entry's `business_date` (saleJournalEntry, dated by
 * open_business_date: an offline sale's till day, the store's day of its till
 * time in its time zone, moved past the store's counted days, never before
 * its latest count nor after the store's today; an online sale's day it was
 * recorded, or the next one when that day was already counted). A sale with
 * no entry (a total of 0 moves no money) counts on the store's day it
 * happened (SALE_HAPPENED_DAY), in the store's time zone.
 *
 * It used to be the day it happened for every sale, so a sale whose day was
 * already counted (synced after the count, rung up after it, or with a till
 * clock before the latest count) counted on a day whose sale entries never
 * had it, and the next day's figures lacked it: a day's revenue disagreed
 * with its revenue account and its settlement.
 */
export const SALE_DAY = saleDayOf(
  "(SELECT e.business_date FROM journal_entries e WHERE e.tenant_id = s.tenant_id AND e.subject_id = s.id AND e.kind = 'sale' LIMIT 1)",
);

/**
 * A store-day's figures from its sales (rows aliased `s`), as columns
 * `sales_count, voided_count, revenue`: every sale counted, voided ones also
 * apart, revenue of those not voided, net of what their partial returns took
 * back (`returned_total`). A return, like a void, changes the figures of its
 * sale's day, not of the day it happens. The rollup, its integrity check and
 * a zone change's recompute aggregate with it.
 */
export const SALE_FIGURES =
  "count(*) AS sales_count, count(*) FILTER (WHERE s.status = 'voided') AS voided_count, coalesce(sum(s.total - s.returned_total) FILTER (WHERE s.status <> 'voided'), 0) AS revenue";

/**
 * How long before its figures were computed a change to a day's sales may
 * still be one the rollup could not see, judged by time: a sale's
 * `created_at` (and a void's `voided_at`) is its transaction's start, and it
 * may commit after the rollup read the sales. Longer than a command runs
 * (statement_timeout 30 s, idle in transaction 60 s), though nothing bounds a
 * transaction of many statements: so it is only a margin for a check that
 * skips what may be stale (daily_sales_rollup_matches_sales) and for figures
 * computed before migration 0900. Whether figures count a change is decided
 * exactly by their snapshot (countedBy in saleChanges.ts).
 */
export const ROLLUP_SETTLE = "interval '5 minutes'";

/**
 * Bounds on SALE_HAPPENED for the sales that happened on store-day `dayText`
 * (an SQL date expression), to narrow the scan by index
 * (sales_without_money_happened_idx, migration 0901): a store's day lies
 * within the UTC days before and after the same date (zones are within 14
 * hours of UTC). Which day a sale is on is decided by SALE_DAY alone.
 */
export const happenedAround = (dayText: string): string =>
  `${SALE_HAPPENED} >= ((${dayText}) - 1)::timestamp AT TIME ZONE 'UTC' AND ${SALE_HAPPENED} < ((${dayText}) + 2)::timestamp AT TIME ZONE 'UTC'`;

/**
 * The ids of a store's sales that may count on a day (SQL text; `tenant`,
 * `store` and `day` are SQL expressions, e.g. columns of the figures' row):
 * those booked on it (journal entries by store and day) and those without
 * money (a total of 0: no entry) that happened on it in the store's time zone.
 * Both by index, bounded on both sides: a day's candidates, however long the
 * history. Filter them with SALE_DAY = day.
 */
export function candidateSaleIds(tenant: string, store: string, day: string): string {
  return `
    SELECT e.subject_id FROM journal_entries e
    WHERE e.tenant_id = ${tenant} AND e.store_id = ${store} AND e.business_date = ${day} AND e.kind = 'sale'
    UNION
    SELECT s.id FROM sales s JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
    WHERE s.tenant_id = ${tenant} AND s.store_id = ${store} AND s.total = 0
      AND ${happenedAround(day)}
      AND ${SALE_HAPPENED_DAY} = ${day}`;
}

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
 * time zone) from its sales, in one statement (an upsert per store): running
 * it again for the same day gives the same rows, with a later void taken into
 * account. A sale counts on the day its money is booked on (SALE_DAY) — so a
 * sale synced the morning after counts the day before, as its money does,
 * unless that day was counted. Each row keeps the statement's snapshot
 * (`computed_snapshot`): the changes it counts are exactly those whose
 * transaction is visible in it.
 */
export async function rollupDailySales(cmd: Command, businessDate: string): Promise<DailySalesRow[]> {
  // Runs for one tenant-day take turns, and each reads the sales in a
  // statement that starts once the previous run has committed: otherwise a
  // run that read the sales before a void, but wrote after a later run, left
  // its older figures over the newer ones (upsert in READ COMMITTED).
  await lockNamed(cmd.tx, `daily-sales-rollup/${cmd.tenantId}/${businessDate}`);
  // The stores' zones FOR SHARE, in a statement of their own, held until
  // this run commits: a change of a store's zone (which recomputes its
  // figures, holding the store row FOR NO KEY UPDATE) and this run take
  // turns, and the statement below starts once the change has committed. It
  // used to lock them in that statement, whose snapshot is taken before it
  // waits: a run that waited for a change wrote figures from before it over
  // the change's, so a sale committed meanwhile — counted by the change's
  // figures, which a catch-up may have read and marked it seen by — was
  // left out of the day's figures for good, and no check said so.
  await sql`SELECT 1 FROM stores WHERE tenant_id = ${cmd.tenantId} ORDER BY id FOR SHARE`.execute(cmd.tx);
  const saleDay = sql.raw(SALE_DAY);
  const saleHappenedDay = sql.raw(SALE_HAPPENED_DAY);
  const happened = sql.raw(SALE_HAPPENED);
  // A store-day that has figures but (no longer) any sale — figures an earlier
  // rule counted there — is recomputed too: to zeros.
  const rows = await all(
    cmd.tx,
    sql<DailySalesRow>`
      WITH st AS (
        -- the stores' zones (locked FOR SHARE above)
        SELECT id, time_zone FROM stores WHERE tenant_id = ${cmd.tenantId}
      ), counted AS (
        SELECT s.store_id, s.status, s.total, s.returned_total FROM sales s JOIN st ON st.id = s.store_id
        WHERE s.tenant_id = ${cmd.tenantId}
          AND s.id IN (
            -- booked on the day (entries by store and day)
            SELECT e.subject_id FROM st
            JOIN journal_entries e ON e.tenant_id = ${cmd.tenantId} AND e.store_id = st.id AND e.business_date = ${businessDate}::date AND e.kind = 'sale'
            UNION
            -- without money (no entry) and happened on the store's day:
            -- happenedAround(the day), with the day as a parameter (bounds
            -- the scan by index)
            SELECT s.id FROM sales s JOIN st ON st.id = s.store_id
            WHERE s.tenant_id = ${cmd.tenantId} AND s.total = 0
              AND ${happened} >= (${businessDate}::date - 1)::timestamp AT TIME ZONE 'UTC'
              AND ${happened} < (${businessDate}::date + 2)::timestamp AT TIME ZONE 'UTC'
              AND ${saleHappenedDay} = ${businessDate}::date)
          AND ${saleDay} = ${businessDate}::date
      ), day AS (
        SELECT s.store_id, ${sql.raw(SALE_FIGURES)}
        FROM counted s
        GROUP BY s.store_id
        UNION ALL
        SELECT r.store_id, 0, 0, 0 FROM daily_sales_rollups r JOIN st ON st.id = r.store_id
        WHERE r.tenant_id = ${cmd.tenantId} AND r.business_date = ${businessDate}::date
          AND NOT EXISTS (SELECT 1 FROM counted s WHERE s.store_id = r.store_id)
      )
      INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op, computed_snapshot)
      SELECT ${cmd.tenantId}, gen_random_uuid(), day.store_id, ${businessDate}::date, day.sales_count, day.voided_count, day.revenue,
             ${cmd.opId}, ${cmd.opId}, pg_current_snapshot()
      FROM day
      ON CONFLICT (tenant_id, store_id, business_date) DO UPDATE
        SET sales_count = EXCLUDED.sales_count, voided_count = EXCLUDED.voided_count, revenue = EXCLUDED.revenue,
            computed_by_op = EXCLUDED.computed_by_op, computed_at = now(), computed_snapshot = EXCLUDED.computed_snapshot
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
        ${andIf(after, (day) => sql`business_date > ${day}::date`)}
      ORDER BY business_date
      LIMIT ${limit}`,
  );
}
