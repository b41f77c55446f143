import type { IntegrityCheck } from '../integrity/check.js';

/** Invariants of daily settlements. */
export const settlementChecks: IntegrityCheck[] = [
  {
    name: 'settlement_matches_ledger',
    severity: 'critical',
    description:
      "A submitted or approved settlement still equals its store-day in the ledger: each cash movement it recorded (sales, voids, payments in and out, other) is what that store's drawer postings dated that day say (drawer_movements), and its float is the one the day was first counted with (a recount after a rejection expects the float the drawer started the day with).",
    sql: `
      SELECT s.tenant_id, s.id::text AS subject,
             jsonb_build_object('store_id', s.store_id, 'business_date', s.business_date, 'status', s.status,
                                'settled', jsonb_build_object('cash_sales', s.cash_sales, 'cash_voids', s.cash_voids, 'payments_in', s.payments_in,
                                                              'payments_out', s.payments_out, 'other_cash', s.other_cash),
                                'ledger', to_jsonb(m), 'float_amount', s.float_amount, 'first_count_float', f.float_amount) AS detail
      FROM settlements s
      CROSS JOIN LATERAL drawer_movements(s.tenant_id, s.store_id, s.business_date) m
      CROSS JOIN LATERAL (
        SELECT first.float_amount FROM settlements first
        WHERE first.tenant_id = s.tenant_id AND first.store_id = s.store_id AND first.business_date = s.business_date
        ORDER BY first.created_at, first.id LIMIT 1
      ) f
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND s.status IN ('submitted', 'approved')
        AND ((s.cash_sales, s.cash_voids, s.payments_in, s.payments_out, s.other_cash)
             IS DISTINCT FROM (m.cash_sales, m.cash_voids, m.payments_in, m.payments_out, m.other_cash)
             OR s.float_amount <> f.float_amount)`,
  },
];
