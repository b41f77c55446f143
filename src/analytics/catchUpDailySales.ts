import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { lockNamed, maybeOne, one } from '../core/db.js';
import { rollupDailySales, SALE_DAY, SALE_HAPPENED_DAY } from './rollupDailySales.js';
import { countedBy, everySaleChange, saleChangesNotSeenBy } from './saleChanges.js';

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

export interface CatchUpResult {
  /**
   * When this run read the changes (its statement's start): every change
   * committed before it is now in its store-day's figures.
   */
  changes_through: string;
  /** The days rolled up again (YYYY-MM-DD), oldest first. */
  days: string[];
}

/**
 * What the scheduled `analytics.rollup` does for a tenant: recomputes every
 * day one of whose stores' figures (a store's day: in its time zone) does not
 * count a change to its sales that the tenant's last catch-up did not see —
 * a sale recorded, voided or partly returned whose transaction is not visible in the snapshot
 * of that run's read (`daily_sales_rollup_progress.changes_snapshot`) — then
 * records the snapshot of this run's own read. Figures count a change when
 * its transaction is visible in the snapshot they were computed from
 * (`daily_sales_rollups.computed_snapshot`, countedBy): a day recomputed since
 * the change (a zone change, a run with a `date`) is left as it is.
 *
 * Exact whatever order changes commit in (saleChangesNotSeenBy): a sale whose
 * transaction had begun — or even taken a smaller id than one this run reads —
 * but not committed when this run read the changes is not visible in this
 * run's snapshot, so the next run reads it. Nothing is trusted to be short.
 * A change that commits after the read but before its day is recomputed
 * here is counted by the figures and skipped by the next run.
 *
 * The changes are read through three indexes (sales by tenant and
 * created_xid, voided_xid, returned_xid), from the last snapshot's xmin up: the cost is
 * that of the changes since the last run. A tenant never caught up (no
 * progress row) looks at all its sales once.
 *
 * The days and the progress row commit together. Runs of one tenant take
 * turns (the lock is taken before the progress row is read, so each run's
 * snapshot is later than the one it reads), and each day is recomputed under
 * that day's own lock (rollupDailySales), oldest first. A run and a change of
 * a store's zone take turns too (the stores are read FOR SHARE first): the
 * changes are read in the zones the figures are computed in.
 */
/**
 * A database moved to another server by dump and restore keeps the
 * transaction ids and snapshots its rows hold, while the new server counts its
 * own ids from its start — usually far below them. Every sale made after the
 * move had an id below the last run's snapshot's xmin: no run read it (the
 * figures stopped changing), and figures' snapshots "saw" it, uncounted.
 * An id at or above this server's next one was never handed out here
 * (pg_snapshot_xmax of the current snapshot; xid8 never wraps): the tenant's
 * sales' such ids are cleared (as for a change made before migration 0900:
 * seen by every snapshot — the trigger of migration 1130 lets an UPDATE clear
 * only those), and so are its figures' snapshots taken there (judged by time
 * then, as figures computed before 0900: countedBy). By index (the two xid
 * indexes from this server's next id up) and the tenant's figures: run on a
 * tenant's first catch-up and on the first after a move, then never.
 */
async function forgetTransactionIdsOfAnotherServer(cmd: Command): Promise<void> {
  const { tx, tenantId } = cmd;
  await sql`
    UPDATE sales SET created_xid = NULL
    WHERE tenant_id = ${tenantId} AND created_xid >= pg_snapshot_xmax(pg_current_snapshot())`.execute(tx);
  await sql`
    UPDATE sales SET voided_xid = NULL
    WHERE tenant_id = ${tenantId} AND voided_xid >= pg_snapshot_xmax(pg_current_snapshot())`.execute(tx);
  await sql`
    UPDATE sales SET returned_xid = NULL
    WHERE tenant_id = ${tenantId} AND returned_xid >= pg_snapshot_xmax(pg_current_snapshot())`.execute(tx);
  await sql`
    UPDATE daily_sales_rollups SET computed_snapshot = NULL
    WHERE tenant_id = ${tenantId} AND pg_snapshot_xmax(computed_snapshot) > pg_snapshot_xmax(pg_current_snapshot())`.execute(tx);
}

export async function catchUpDailySales(cmd: Command): Promise<CatchUpResult> {
  const { tx, tenantId, opId } = cmd;
  await lockNamed(tx, `daily-sales-rollup-catch-up/${tenantId}`);
  // The tenant's stores FOR SHARE, held until this run commits, before the
  // changes are read: a change of a store's zone (changeTimeZone in src/inventory/createStore.ts, which
  // holds the store row FOR NO KEY UPDATE) and this run take turns. Sales
  // run on during a zone change (they need only FOR KEY SHARE), so a sale
  // without money (its day is its store's, in the store's zone) may commit
  // after the change's recompute took its snapshot: the change's figures do
  // not count it, and a run that read it before the change committed named
  // its day in the old zone, recomputed that day (in the new zone, without
  // it) and marked it seen — its day in the new zone never counted it, and
  // no check said so (daily_sales_rollup_matches_sales skips figures that do
  // not count a change; daily_sales_rollup_stale reads changes not seen).
  // Waiting here, the read sees the new zone and the change's figures.
  await sql`SELECT 1 FROM stores WHERE tenant_id = ${tenantId} ORDER BY id FOR SHARE`.execute(tx);
  const stored = await maybeOne(
    tx,
    // As text: a JS Date would drop the microseconds.
    sql<{ seen: string; since: string; rule: number; elsewhere: boolean }>`
      SELECT changes_snapshot::text AS seen, changes_through::text AS since, sale_day_rule AS rule,
             pg_snapshot_xmax(changes_snapshot) > pg_snapshot_xmax(pg_current_snapshot()) AS elsewhere
      FROM daily_sales_rollup_progress WHERE tenant_id = ${tenantId}`,
  );
  // The last run's snapshot taken on another server (the database dumped and
  // restored elsewhere), or no run yet: the ids and snapshots stored on
  // another server are cleared first (forgetTransactionIdsOfAnotherServer),
  // and this run looks at every sale, as a first run does.
  if (!stored || stored.elsewhere) await forgetTransactionIdsOfAnotherServer(cmd);
  const progress = stored?.elsewhere ? undefined : stored;
  const changes = sql.raw(progress ? saleChangesNotSeenBy('p') : everySaleChange('p.tenant_id'));
  // Figures computed before a sale counted on its money's day (SALE_DAY_RULE)
  // may count it on the day it happened: those days and the days that must
  // count it, once (migration 0880).
  const redate = (stored?.rule ?? 1) < SALE_DAY_RULE;
  // One statement: the snapshot recorded is the one the changes were read in.
  const read = await one(
    tx,
    sql<{ seen: string; through: string; days: string[] }>`
      WITH p AS (
        SELECT ${tenantId}::uuid AS tenant_id, ${progress?.seen ?? null}::pg_snapshot AS changes_snapshot
      ), changed AS (
        SELECT s.store_id, ${sql.raw(SALE_DAY)} AS day, s.xid, s.changed_at
        FROM p CROSS JOIN LATERAL (${changes}) s
        JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
      ), redated AS (
        -- the rule before: the store's day it happened, in its time zone (SALE_HAPPENED_DAY)
        SELECT both_days.day
        FROM journal_entries e
        JOIN sales s ON s.tenant_id = e.tenant_id AND s.id = e.subject_id
        JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
        CROSS JOIN LATERAL (VALUES (e.business_date), (${saleHappenedDay})) both_days (day)
        WHERE ${redate} AND e.tenant_id = ${tenantId} AND e.kind = 'sale'
          AND e.business_date <> ${saleHappenedDay}
      ), days AS (
        SELECT c.day
        FROM changed c
        LEFT JOIN daily_sales_rollups r ON r.tenant_id = ${tenantId} AND r.store_id = c.store_id AND r.business_date = c.day
        WHERE NOT ${sql.raw(countedBy('r', 'c.xid', 'c.changed_at'))}
        UNION
        SELECT day FROM redated
      )
      SELECT pg_current_snapshot()::text AS seen, statement_timestamp()::text AS through,
             coalesce((SELECT array_agg(DISTINCT to_char(day, 'YYYY-MM-DD') ORDER BY to_char(day, 'YYYY-MM-DD')) FROM days), '{}') AS days`,
  );
  for (const day of read.days) await rollupDailySales(cmd, day);
  await sql`
    INSERT INTO daily_sales_rollup_progress (tenant_id, changes_through, changes_snapshot, sale_day_rule, op_id, updated_by_op)
    VALUES (${tenantId}, ${read.through}::timestamptz, ${read.seen}::pg_snapshot, ${SALE_DAY_RULE}, ${opId}, ${opId})
    ON CONFLICT (tenant_id) DO UPDATE
      SET changes_through = EXCLUDED.changes_through, changes_snapshot = EXCLUDED.changes_snapshot,
          sale_day_rule = EXCLUDED.sale_day_rule, updated_by_op = EXCLUDED.updated_by_op, updated_at = now()`.execute(tx);
  cmd.touch('daily_sales_rollup_progress', tenantId, stored ? 'updated' : 'created');
  const result = { changes_through: read.through, days: read.days };
  cmd.audit({ subjectType: 'daily_sales_rollup_progress', subjectId: tenantId, before: { changes_through: stored?.since ?? null }, after: result });
  return result;
}
