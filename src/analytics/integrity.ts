import type { IntegrityCheck } from '../integrity/check.js';
import { ROLLUP_SETTLE, SALE_HAPPENED } from './rollupDailySales.js';

/** Derived figures (API.md: analytics are computed from the sales, never the source of truth). */
export const analyticsChecks: IntegrityCheck[] = [
  {
    name: 'daily_sales_rollup_matches_sales',
    severity: 'warning',
    description:
      "A store-day's sales figures (daily_sales_rollups: sales, voided, revenue) equal what that day's sales give — unless one of them was recorded or voided since the figures were computed (the nightly run recomputes those days).",
    sql: `
      SELECT r.tenant_id, r.store_id::text || '/' || r.business_date::text AS subject,
             jsonb_build_object('store_id', r.store_id, 'business_date', r.business_date, 'computed_at', r.computed_at,
                                'rollup', jsonb_build_object('sales_count', r.sales_count, 'voided_count', r.voided_count, 'revenue', r.revenue),
                                'sales', jsonb_build_object('sales_count', a.sales_count, 'voided_count', a.voided_count, 'revenue', a.revenue)) AS detail
      FROM daily_sales_rollups r
      CROSS JOIN LATERAL (
        SELECT count(*) AS sales_count, count(*) FILTER (WHERE s.status = 'voided') AS voided_count,
               coalesce(sum(s.total) FILTER (WHERE s.status <> 'voided'), 0) AS revenue,
               max(greatest(s.created_at, coalesce(s.voided_at, s.created_at))) AS last_change
        FROM sales s
        WHERE s.tenant_id = r.tenant_id AND s.store_id = r.store_id
          AND s.created_at >= (r.business_date)::timestamp AT TIME ZONE 'UTC'
          AND ${SALE_HAPPENED} >= (r.business_date)::timestamp AT TIME ZONE 'UTC'
          AND ${SALE_HAPPENED} < (r.business_date + 1)::timestamp AT TIME ZONE 'UTC'
      ) a
      WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
        AND (r.sales_count, r.voided_count, r.revenue) IS DISTINCT FROM (a.sales_count, a.voided_count, a.revenue)
        AND (a.last_change IS NULL OR a.last_change < r.computed_at - ${ROLLUP_SETTLE})`,
  },
];
