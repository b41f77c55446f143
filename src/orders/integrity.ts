import type { IntegrityCheck } from '../integrity/check.js';

/** Orders to the outside provider (DESIGN.md principle 6: no stuck state). */
export const orderChecks: IntegrityCheck[] = [
  {
    name: 'order_not_stuck',
    severity: 'warning',
    description:
      'No order stays pending or submitting longer than the checker’s threshold (later than the worker’s own recovery, so a finding means recovery is not working).',
    sql: `
      SELECT o.tenant_id, o.id::text AS subject,
             jsonb_build_object('status', o.status, 'store_id', o.store_id, 'since', o.status_changed_at,
                                'submit_attempts', o.submit_attempts, 'recoveries', o.recoveries, 'last_error', o.last_error) AS detail
      FROM orders o
      WHERE ($1::uuid IS NULL OR o.tenant_id = $1)
        AND o.status IN ('pending', 'submitting')
        AND o.status_changed_at < now() - make_interval(secs => coalesce(nullif(current_setting('storekeep.orders_stuck_seconds', true), '')::int, 600))`,
  },
  {
    name: 'order_status_matches_history',
    severity: 'critical',
    description: 'Every order’s status is the last status of its append-only history.',
    sql: `
      SELECT o.tenant_id, o.id::text AS subject,
             jsonb_build_object('status', o.status, 'store_id', o.store_id, 'history_status', h.to_status) AS detail
      FROM orders o
      LEFT JOIN LATERAL (
        SELECT to_status FROM order_status_history h
        WHERE h.tenant_id = o.tenant_id AND h.order_id = o.id ORDER BY h.id DESC LIMIT 1
      ) h ON true
      WHERE ($1::uuid IS NULL OR o.tenant_id = $1) AND o.status IS DISTINCT FROM h.to_status`,
  },
];
