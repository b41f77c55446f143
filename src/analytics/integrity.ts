import type { IntegrityCheck } from '../integrity/check.js';
import { candidateSaleIds, SALE_DAY, SALE_FIGURES } from './rollupDailySales.js';
import { countedBy, everySaleChange, saleChangesNotSeenBy } from './saleChanges.js';
import { SALE_DAY_RULE } from './catchUpDailySales.js';

/**
 * How long a change to a store-day's sales may wait for its figures: the
 * scheduled rollup runs every 24 hours (00:20 UTC, src/jobs/registry.ts) and
 * catches up every change it has not seen. Plus two hours for the run itself
 * and its retries. A change older than this that its figures do not count is
 * a rollup that did not run, not one about to.
 */
export const ROLLUP_STALE_AFTER = "interval '26 hours'";

/** Derived figures (API.md: analytics are computed from the sales, never the source of truth). */
export const analyticsChecks: IntegrityCheck[] = [
  {
    name: 'daily_sales_rollup_matches_sales',
    severity: 'warning',
    description:
      "A store-day's sales figures (daily_sales_rollups: sales, voided, revenue) equal what that day's sales give (revenue net of partial returns) — unless one of them was recorded, voided or partly returned in a transaction the figures' snapshot does not see (computed_snapshot; figures computed before migration 0900: since, or up to 5 minutes before, they were computed): the next scheduled run recomputes those days, and daily_sales_rollup_stale reports one that did not.",
    sql: `
      SELECT r.tenant_id, r.store_id::text || '/' || r.business_date::text AS subject,
             jsonb_build_object('store_id', r.store_id, 'business_date', r.business_date, 'computed_at', r.computed_at,
                                'rollup', jsonb_build_object('sales_count', r.sales_count, 'voided_count', r.voided_count, 'revenue', r.revenue),
                                'sales', jsonb_build_object('sales_count', a.sales_count, 'voided_count', a.voided_count, 'revenue', a.revenue)) AS detail
      FROM daily_sales_rollups r
      JOIN stores st ON st.tenant_id = r.tenant_id AND st.id = r.store_id
      CROSS JOIN LATERAL (
        SELECT ${SALE_FIGURES},
               -- every change of the day's sales is one the figures count (their snapshot; before 0900 their time)
               coalesce(bool_and(${countedBy('r', 's.created_xid', 's.created_at')}
                                 AND (s.voided_at IS NULL OR ${countedBy('r', 's.voided_xid', 's.voided_at')})
                                 AND (s.returned_at IS NULL OR ${countedBy('r', 's.returned_xid', 's.returned_at')})), true) AS all_counted
        FROM sales s
        WHERE s.tenant_id = r.tenant_id AND s.store_id = r.store_id
          AND s.id IN (${candidateSaleIds('r.tenant_id', 'r.store_id', 'r.business_date')})
          AND ${SALE_DAY} = r.business_date
      ) a
      WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
        AND (r.sales_count, r.voided_count, r.revenue) IS DISTINCT FROM (a.sales_count, a.voided_count, a.revenue)
        AND a.all_counted`,
  },
  {
    name: 'daily_sales_rollup_stale',
    severity: 'warning',
    description:
      "No store-day's sales changed (a sale recorded, voided or partly returned) more than the grace (26 hours: the nightly rollup plus a margin) ago in a way its figures do not count, nor has sales that old and no figures at all: the scheduled rollup catches every change up, so such a day is figures that will stay wrong.",
    // Only the changes the tenant's last catch-up has not seen (not visible
    // in daily_sales_rollup_progress.changes_snapshot: two index ranges from
    // its xmin up) can be waiting: every change it saw, it counted in the
    // same transaction (or found counted). So this reads the changes since
    // the last catch-up — none older than the grace while the schedule runs
    // — never a tenant's history; a tenant never caught up has all its
    // sales read, each of them waiting for that first run.
    sql: `
      WITH waiting AS (
        SELECT s.* FROM daily_sales_rollup_progress p
        CROSS JOIN LATERAL (${saleChangesNotSeenBy('p')}) s
        WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
        UNION ALL
        SELECT s.* FROM (SELECT DISTINCT tenant_id FROM stores WHERE ($1::uuid IS NULL OR tenant_id = $1)) t
        CROSS JOIN LATERAL (${everySaleChange('t.tenant_id')}) s
        WHERE NOT EXISTS (SELECT 1 FROM daily_sales_rollup_progress p WHERE p.tenant_id = t.tenant_id)
      )
      SELECT s.tenant_id, s.store_id::text || '/' || d.business_date::text AS subject,
             jsonb_build_object('store_id', s.store_id, 'business_date', d.business_date, 'computed_at', r.computed_at,
                                'first_change_not_counted', min(s.changed_at), 'changes_not_counted', count(*)) AS detail
      FROM waiting s
      JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
      CROSS JOIN LATERAL (SELECT ${SALE_DAY} AS business_date) d
      LEFT JOIN daily_sales_rollups r ON r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.business_date = d.business_date
      WHERE s.changed_at < now() - ${ROLLUP_STALE_AFTER}
        AND NOT ${countedBy('r', 's.xid', 's.changed_at')}
      GROUP BY s.tenant_id, s.store_id, d.business_date, r.computed_at`,
  },
  {
    name: 'daily_sales_rollup_present',
    severity: 'warning',
    description:
      "Every store-day with a sale the tenant's last catch-up saw (recorded in a transaction visible in daily_sales_rollup_progress.changes_snapshot) has figures: the catch-up writes a day's figures in the transaction that sees its change, so such a day without them lost its figures (daily_sales_rollup_stale reads only the changes the catch-up has not seen).",
    // What it catches is the loss of figures for any day of the history (a
    // row deleted by hand, a partial restore): a row that is gone leaves no
    // trace but its absence, so no check bounded by the recent changes can
    // see it — some pass over the days with sales is needed. That pass goes
    // over the store-days, not the sales: each store's days with a sale
    // booked (its `sale` journal entries) are walked one index probe a day
    // (journal_entries_store_day_idx, a loose index scan), each looked up in
    // the figures (their unique key); only the sales of a day without
    // figures — normally the days the next catch-up has still to see — and
    // the sales without money (a total of 0: no entry; by the partial index
    // sales_without_money_happened_idx) are read. A sale with money but no
    // entry of its store is money_sale_posted's (critical) finding. It used
    // to read every sale of the caught-up tenants (src/analytics/
    // integrity.int.spec.ts counts the rows read). A tenant whose last
    // catch-up predates SALE_DAY_RULE may still have its figures on the old
    // rule's days until its next one re-dates them: not checked until then.
    sql: `
      WITH RECURSIVE caught AS (
        SELECT p.tenant_id, p.changes_snapshot, p.changes_through FROM daily_sales_rollup_progress p
        WHERE ($1::uuid IS NULL OR p.tenant_id = $1) AND p.sale_day_rule >= ${SALE_DAY_RULE}
      ), booked_days (tenant_id, store_id, day) AS (
        SELECT st.tenant_id, st.id,
               (SELECT e.business_date FROM journal_entries e
                WHERE e.tenant_id = st.tenant_id AND e.store_id = st.id AND e.kind = 'sale'
                ORDER BY e.business_date LIMIT 1)
        FROM caught c JOIN stores st ON st.tenant_id = c.tenant_id
        UNION ALL
        SELECT d.tenant_id, d.store_id,
               (SELECT e.business_date FROM journal_entries e
                WHERE e.tenant_id = d.tenant_id AND e.store_id = d.store_id AND e.kind = 'sale' AND e.business_date > d.day
                ORDER BY e.business_date LIMIT 1)
        FROM booked_days d WHERE d.day IS NOT NULL
      ), unfigured_days AS MATERIALIZED (
        -- the booked store-days without figures, found before any of their sales is read
        SELECT d.tenant_id, d.store_id, d.day FROM booked_days d
        WHERE d.day IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM daily_sales_rollups r WHERE r.tenant_id = d.tenant_id AND r.store_id = d.store_id AND r.business_date = d.day)
      ), candidates AS (
        -- the sales booked on them
        SELECT s.*, c.changes_snapshot AS seen_by, c.changes_through AS seen_through
        FROM unfigured_days d
        JOIN caught c ON c.tenant_id = d.tenant_id
        JOIN journal_entries e ON e.tenant_id = d.tenant_id AND e.store_id = d.store_id AND e.business_date = d.day AND e.kind = 'sale'
        JOIN sales s ON s.tenant_id = e.tenant_id AND s.id = e.subject_id
        UNION ALL
        -- and the sales without money, which have no entry
        SELECT s.*, c.changes_snapshot, c.changes_through
        FROM caught c JOIN sales s ON s.tenant_id = c.tenant_id AND s.total = 0
        WHERE NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.tenant_id = s.tenant_id AND e.subject_id = s.id AND e.kind = 'sale')
      )
      SELECT s.tenant_id, s.store_id::text || '/' || d.business_date::text AS subject,
             jsonb_build_object('store_id', s.store_id, 'business_date', d.business_date, 'sales', count(*),
                                'changes_through', s.seen_through) AS detail
      FROM candidates s
      JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
      CROSS JOIN LATERAL (SELECT ${SALE_DAY} AS business_date) d
      WHERE (s.created_xid IS NULL OR pg_visible_in_snapshot(s.created_xid, s.seen_by))
        AND NOT EXISTS (SELECT 1 FROM daily_sales_rollups r
                        WHERE r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.business_date = d.business_date)
      GROUP BY s.tenant_id, s.store_id, d.business_date, s.seen_through`,
  },
];
