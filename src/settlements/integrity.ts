import type { IntegrityCheck } from '../integrity/check.js';

/** Invariants of daily settlements. */
export const settlementChecks: IntegrityCheck[] = [
  {
    name: 'settlement_matches_ledger',
    severity: 'critical',
    description:
      'A submitted or approved settlement still equals its store-day in the ledger: the cash movements it recorded are the postings to that store\'s drawer dated that day.',
    sql: `
      SELECT s.tenant_id, s.id::text AS subject,
             jsonb_build_object('store_id', s.store_id, 'business_date', s.business_date, 'status', s.status,
                                'settled_movements', s.cash_sales - s.cash_voids + s.payments_in - s.payments_out + s.other_cash,
                                'ledger_movements', coalesce(l.total, 0)) AS detail
      FROM settlements s
      LEFT JOIN LATERAL (
        SELECT sum(p.amount) AS total
        FROM journal_entries e
        JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
        JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
        WHERE e.tenant_id = s.tenant_id AND e.store_id = s.store_id AND e.business_date = s.business_date
          AND a.key = 'store/' || s.store_id || '/cash_drawer'
      ) l ON true
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
        AND s.status IN ('submitted', 'approved')
        AND s.cash_sales - s.cash_voids + s.payments_in - s.payments_out + s.other_cash <> coalesce(l.total, 0)`,
  },
];
