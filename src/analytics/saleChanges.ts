import { ROLLUP_SETTLE } from './rollupDailySales.js';

/*
 * The changes to a tenant's sales that its daily figures count — a sale
 * recorded, a sale voided, a sale's latest partial return — as rows: every
 * column of the sale (`s.*`) and the change's `xid` (the id of the
 * transaction that made it: `created_xid`, `voided_xid` or `returned_xid`;
 * NULL for a change made before migration 0900) and `changed_at` (when that
 * transaction began: `created_at`, `voided_at` or `returned_at`). A sale's
 * returns follow one another on its locked row, so the latest one's id being
 * seen means every earlier one was too.
 * SQL text for a LATERAL subquery.
 * The catch-up (catchUpDailySales) and the integrity check
 * daily_sales_rollup_stale read them the same way.
 */

/**
 * The changes the catch-up has not seen, for a progress row aliased
 * `progress` (daily_sales_rollup_progress, or a row with its `tenant_id` and
 * `changes_snapshot`): those whose transaction is not visible in its
 * snapshot. Three index ranges (sales_created_xid_idx, sales_voided_xid_idx,
 * sales_returned_xid_idx):
 * the ids from the snapshot's xmin up. Every
 * transaction below xmin had finished when the snapshot was taken, so its
 * changes were seen; one still running then — whatever its id, below the
 * highest id seen or not — is in the snapshot's in-progress list or at or
 * above its xmax, so it is read here once committed. What is read is the
 * changes since the last catch-up (plus those of transactions that finished
 * while an older one was still running: the snapshot's xmin is the oldest
 * running one's id), never the tenant's history.
 */
export function saleChangesNotSeenBy(progress: string): string {
  return `
    SELECT s.*, s.created_xid AS xid, s.created_at AS changed_at FROM sales s
    WHERE s.tenant_id = ${progress}.tenant_id AND s.created_xid >= pg_snapshot_xmin(${progress}.changes_snapshot)
      AND NOT pg_visible_in_snapshot(s.created_xid, ${progress}.changes_snapshot)
    UNION ALL
    SELECT s.*, s.voided_xid, s.voided_at FROM sales s
    WHERE s.tenant_id = ${progress}.tenant_id AND s.voided_xid >= pg_snapshot_xmin(${progress}.changes_snapshot)
      AND NOT pg_visible_in_snapshot(s.voided_xid, ${progress}.changes_snapshot)
    UNION ALL
    SELECT s.*, s.returned_xid, s.returned_at FROM sales s
    WHERE s.tenant_id = ${progress}.tenant_id AND s.returned_xid >= pg_snapshot_xmin(${progress}.changes_snapshot)
      AND NOT pg_visible_in_snapshot(s.returned_xid, ${progress}.changes_snapshot)`;
}

/**
 * Every change of the tenant's sales: for a tenant the catch-up never ran
 * for (no progress row), whose first run looks at all its sales once.
 * (OFFSET 0 keeps it a subquery run for each such tenant, by index: pulled up
 * into its query, it was planned as a hash join of EVERY tenant's sales
 * against the tenants never caught up — usually none.)
 */
export function everySaleChange(tenant: string): string {
  return `
    SELECT s.*, c.xid, c.changed_at FROM sales s
    CROSS JOIN LATERAL (VALUES (s.created_xid, s.created_at), (s.voided_xid, s.voided_at), (s.returned_xid, s.returned_at)) c (xid, changed_at)
    WHERE s.tenant_id = ${tenant} AND c.changed_at IS NOT NULL
    OFFSET 0`;
}

/**
 * Whether the figures row `figures` (an alias of daily_sales_rollups, or of
 * a LEFT JOIN that found none: false) count the change (`xid`,
 * `changedAt`): its transaction is visible in the snapshot the figures were
 * computed from (computed_snapshot) — a change with no id predates migration
 * 0900, and so every snapshot. Figures computed before 0900 have no snapshot
 * and are judged as they were then: a change stamped more than
 * ROLLUP_SETTLE before they were computed.
 */
export function countedBy(figures: string, xid: string, changedAt: string): string {
  return `coalesce(CASE WHEN ${figures}.computed_snapshot IS NOT NULL
      THEN ${xid} IS NULL OR pg_visible_in_snapshot(${xid}, ${figures}.computed_snapshot)
      ELSE ${changedAt} < ${figures}.computed_at - ${ROLLUP_SETTLE} END, false)`;
}
