import type { IntegrityCheck } from '../integrity/check.js';

/** Invariants of the double-entry ledger (DESIGN.md principle 2). */
export const moneyChecks: IntegrityCheck[] = [
  {
    name: 'money_journal_entry_balanced',
    severity: 'critical',
    description: 'The postings of every journal entry sum to zero, and there are at least two.',
    sql: `
      SELECT e.tenant_id, e.id::text AS subject,
             jsonb_build_object('sum', coalesce(sum(p.amount), 0), 'postings', count(p.id), 'kind', e.kind) AS detail
      FROM journal_entries e
      LEFT JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
      WHERE ($1::uuid IS NULL OR e.tenant_id = $1)
      GROUP BY e.tenant_id, e.id, e.kind
      HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.id) < 2`,
  },
  {
    name: 'money_account_totals_match_postings',
    severity: 'critical',
    description: 'Every account balance equals the sum of its postings, and its debit and credit totals the sums of its debits and credits.',
    sql: `
      SELECT a.tenant_id, a.id::text AS subject,
             jsonb_build_object('key', a.key, 'balance', a.balance, 'postings_sum', coalesce(s.total, 0),
                                'debit_total', a.debit_total, 'debits', coalesce(s.debits, 0),
                                'credit_total', a.credit_total, 'credits', coalesce(s.credits, 0)) AS detail
      FROM accounts a
      LEFT JOIN (
        SELECT tenant_id, account_id, sum(amount) AS total,
               sum(amount) FILTER (WHERE amount > 0) AS debits, -sum(amount) FILTER (WHERE amount < 0) AS credits
        FROM postings WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, account_id
      ) s ON s.tenant_id = a.tenant_id AND s.account_id = a.id
      WHERE ($1::uuid IS NULL OR a.tenant_id = $1)
        AND (a.balance <> coalesce(s.total, 0) OR a.debit_total <> coalesce(s.debits, 0) OR a.credit_total <> coalesce(s.credits, 0))`,
  },
  {
    name: 'money_party_has_account',
    severity: 'critical',
    description: 'Every supplier and customer has exactly its one account.',
    sql: `
      SELECT p.tenant_id, p.id::text AS subject, jsonb_build_object('kind', p.kind) AS detail
      FROM parties p
      WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.tenant_id = p.tenant_id AND a.party_id = p.id)`,
  },
  {
    name: 'money_payment_has_entry',
    severity: 'critical',
    description: 'Every payment has its journal entry, moving exactly the payment amount.',
    sql: `
      SELECT pay.tenant_id, pay.id::text AS subject, jsonb_build_object('amount', pay.amount, 'entry_id', pay.entry_id) AS detail
      FROM payments pay
      WHERE ($1::uuid IS NULL OR pay.tenant_id = $1)
        AND pay.amount <> coalesce((SELECT sum(p.amount) FILTER (WHERE p.amount > 0) FROM postings p
                                    WHERE p.tenant_id = pay.tenant_id AND p.entry_id = pay.entry_id), 0)`,
  },
];
