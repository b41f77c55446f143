import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, lockNamed, one } from '../core/db.js';
import { SALE_VOID_OP } from '../sales/voidSale.js';
import { rollupDailySales, ROLLUP_SETTLE, SALE_DAY, SALE_HAPPENED_DAY } from './rollupDailySales.js';

const saleDay = sql.raw(SALE_DAY);
const saleHappenedDay = sql.raw(SALE_HAPPENED_DAY);

/**
 * The rule the figures of a tenant were caught up under
 * (`daily_sales_rollup_progress.sale_day_rule`): 1, a sale counted on the
 * store's day it happened (SALE_HAPPENED_DAY, in the store's time zone); 2,
 * on the day its money is booked on (SALE_DAY). A run that
 * finds an older rule recomputes, once, both days of every sale whose two
 * days differ.
 */
export const SALE_DAY_RULE = 2;
const settle = sql.raw(ROLLUP_SETTLE);

export interface CatchUpResult {
  /** Every change stamped before this is now in its store-day's figures. */
  changes_through: string;
  /** The days rolled up again (YYYY-MM-DD), oldest first. */
  days: string[];
}

/**
 * What the scheduled `analytics.rollup` does for a tenant: recomputes every
 * day one of whose stores' figures (a store's day: in its time zone) may not count a change to its sales —
 * a sale recorded or voided since the tenant's last catch-up
 * (`daily_sales_rollup_progress.changes_through`) that its store-day's
 * figures were computed before (or within ROLLUP_SETTLE after: a change is
 * stamped when its transaction began and may have committed after the
 * figures read the sales), or whose store-day has no figures at all — then
 * moves `changes_through` to ROLLUP_SETTLE before this transaction began.
 * Every change stamped before that had committed when this transaction
 * began, so the statement below saw it; changes since are looked at again
 * by the next run (and skipped if figures computed since count them).
 *
 * Nothing is written by a sale or a void for this: the changes are found
 * through indexes those paths already keep — sales recorded since, per store
 * (`sales_store_created_idx`); voids since, as the `sale.void` operations
 * since (`operations_created_idx`), each to its sale through its audit event
 * (`events_op_idx`) — so the cost is that of the changes since the last run.
 * A tenant never caught up (no progress row) looks at all its sales once.
 *
 * The days and the progress row commit together. Runs of one tenant take
 * turns (the lock is taken before the progress row is read), and each day is
 * recomputed under that day's own lock (rollupDailySales), oldest first.
 */
export async function catchUpDailySales(cmd: Command): Promise<CatchUpResult> {
  const { tx, tenantId, opId } = cmd;
  await lockNamed(tx, `daily-sales-rollup-catch-up/${tenantId}`);
  const progress = await one(
    tx,
    // As text: a JS Date would drop the microseconds.
    sql<{ since: string | null; through: string; rule: number | null }>`
      SELECT (SELECT changes_through::text FROM daily_sales_rollup_progress WHERE tenant_id = ${tenantId}) AS since,
             (SELECT sale_day_rule FROM daily_sales_rollup_progress WHERE tenant_id = ${tenantId}) AS rule,
             (now() - ${settle})::text AS through`,
  );
  const since = sql`coalesce(${progress.since}::timestamptz, '-infinity')`;
  // Figures computed before a sale counted on its money's day (SALE_DAY_RULE)
  // may count it on the day it happened: those days and the days that must
  // count it, once (migration 0880).
  const redate = (progress.rule ?? 1) < SALE_DAY_RULE;
  const days = await all(
    tx,
    sql<{ day: string }>`
      WITH changed AS (
        SELECT s.store_id, ${saleDay} AS day, s.created_at AS changed_at
        FROM stores st
        CROSS JOIN LATERAL (
          SELECT s.* FROM sales s
          WHERE s.tenant_id = st.tenant_id AND s.store_id = st.id AND s.created_at >= ${since}
        ) s
        WHERE st.tenant_id = ${tenantId}
        UNION ALL
        SELECT s.store_id, ${saleDay}, s.voided_at
        FROM operations o
        JOIN events e ON e.tenant_id = o.tenant_id AND e.op_id = o.id AND e.subject_type = 'sale'
        JOIN sales s ON s.tenant_id = e.tenant_id AND s.id = e.subject_id::uuid AND s.voided_by_op = o.id
        JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
        WHERE o.tenant_id = ${tenantId} AND o.type = ${SALE_VOID_OP} AND o.created_at >= ${since}
      ), redated AS (
        -- the rule before: the store's day it happened, in its time zone (SALE_HAPPENED_DAY)
        SELECT both_days.day
        FROM journal_entries e
        JOIN sales s ON s.tenant_id = e.tenant_id AND s.id = e.subject_id
        JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
        CROSS JOIN LATERAL (VALUES (e.business_date), (${saleHappenedDay})) both_days (day)
        WHERE ${redate} AND e.tenant_id = ${tenantId} AND e.kind = 'sale'
          AND e.business_date <> ${saleHappenedDay}
      )
      SELECT DISTINCT to_char(c.day, 'YYYY-MM-DD') AS day
      FROM changed c
      LEFT JOIN daily_sales_rollups r ON r.tenant_id = ${tenantId} AND r.store_id = c.store_id AND r.business_date = c.day
      WHERE r.computed_at IS NULL OR c.changed_at >= r.computed_at - ${settle}
      UNION
      SELECT to_char(day, 'YYYY-MM-DD') FROM redated
      ORDER BY 1`,
  );
  for (const { day } of days) await rollupDailySales(cmd, day);
  await sql`
    INSERT INTO daily_sales_rollup_progress (tenant_id, changes_through, sale_day_rule, op_id, updated_by_op)
    VALUES (${tenantId}, ${progress.through}::timestamptz, ${SALE_DAY_RULE}, ${opId}, ${opId})
    ON CONFLICT (tenant_id) DO UPDATE
      SET changes_through = greatest(daily_sales_rollup_progress.changes_through, EXCLUDED.changes_through),
          sale_day_rule = EXCLUDED.sale_day_rule, updated_by_op = EXCLUDED.updated_by_op, updated_at = now()`.execute(tx);
  cmd.touch('daily_sales_rollup_progress', tenantId, progress.since === null ? 'created' : 'updated');
  const result = { changes_through: progress.through, days: days.map(({ day }) => day) };
  cmd.audit({ subjectType: 'daily_sales_rollup_progress', subjectId: tenantId, before: { changes_through: progress.since }, after: result });
  return result;
}
