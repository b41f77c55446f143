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
  {
    name: 'order_history_follows_machine',
    severity: 'critical',
    description:
      'Every order’s history is a chain of transitions the state machine allows: it starts pending, each entry moves on from where the one before it ended, and none moves an order back or out of a final status.',
    // One finding per order, at its first entry that breaks the chain. Allowed:
    // pending → submitting; from a status before final, on to one further
    // along (pending < submitting < submitted < processing < completed, failed,
    // cancelled); a recovery's resubmit (pending → pending, submitting → submitting).
    sql: `
      SELECT DISTINCT ON (h.tenant_id, h.order_id) h.tenant_id, h.order_id::text AS subject,
             jsonb_build_object('history_id', h.id, 'from_status', h.from_status, 'to_status', h.to_status,
                                'previous_to_status', h.previous, 'source', h.source, 'op_id', h.op_id) AS detail
      FROM (
        SELECT h.tenant_id, h.order_id, h.id, h.from_status, h.to_status, h.source, h.op_id,
               lag(h.to_status) OVER w AS previous, row_number() OVER w AS n,
               coalesce(array_position(ARRAY['pending', 'submitting', 'submitted', 'processing'], h.from_status) - 1, 4) AS from_rank,
               coalesce(array_position(ARRAY['pending', 'submitting', 'submitted', 'processing'], h.to_status) - 1, 4) AS to_rank
        FROM order_status_history h
        WHERE ($1::uuid IS NULL OR h.tenant_id = $1)
        WINDOW w AS (PARTITION BY h.tenant_id, h.order_id ORDER BY h.id)
      ) h
      WHERE CASE
              WHEN h.n = 1 THEN NOT (h.from_status IS NULL AND h.to_status = 'pending')
              ELSE h.from_status IS DISTINCT FROM h.previous
                OR h.from_rank >= 4
                OR NOT (h.to_rank > h.from_rank OR (h.from_status = h.to_status AND h.from_status IN ('pending', 'submitting')))
            END
      ORDER BY h.tenant_id, h.order_id, h.id`,
  },
  {
    name: 'order_has_lines',
    severity: 'critical',
    description: 'Every order has at least one line (an order and its lines are created in one transaction; the provider is sent them).',
    sql: `
      SELECT o.tenant_id, o.id::text AS subject, jsonb_build_object('status', o.status, 'store_id', o.store_id) AS detail
      FROM orders o
      WHERE ($1::uuid IS NULL OR o.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM order_lines l WHERE l.tenant_id = o.tenant_id AND l.order_id = o.id)`,
  },
];
