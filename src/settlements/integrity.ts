import type { IntegrityCheck } from '../integrity/check.js';

/** Invariants of daily settlements. */
export const settlementChecks: IntegrityCheck[] = [
  {
    name: 'settlement_matches_ledger',
    severity: 'critical',
    description:
      "A submitted or approved settlement still equals its store-day in the ledger: each cash movement it recorded (sales, voids, returns, payments in and out, other) is what that store's drawer postings dated that day say (drawer_movements), and its float is the one the day was first counted with (a recount after a rejection expects the float the drawer started the day with).",
    sql: `
      SELECT s.tenant_id, s.id::text AS subject,
             jsonb_build_object('store_id', s.store_id, 'business_date', s.business_date, 'status', s.status,
                                'settled', jsonb_build_object('cash_sales', s.cash_sales, 'cash_voids', s.cash_voids, 'cash_returns', s.cash_returns, 'payments_in', s.payments_in,
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
        AND ((s.cash_sales, s.cash_voids, s.cash_returns, s.payments_in, s.payments_out, s.other_cash)
             IS DISTINCT FROM (m.cash_sales, m.cash_voids, m.cash_returns, m.payments_in, m.payments_out, m.other_cash)
             OR s.float_amount <> f.float_amount)`,
  },
  {
    name: 'settlement_day_not_after_store_today',
    severity: 'warning',
    description:
      "No store's latest counted day (a settlement of any status) is after its today in its time zone (store_day(time_zone, clock_timestamp())): money after a count is booked on the first day not counted, so the store's next money would be booked on a day its clock has not reached, and that day could not be counted until it does.",
    // A count of a day after today is refused, and so is a zone change that
    // would leave the store so (assertTodayNotBeforeLatestCount); stores moved
    // before that refusal can be in it. A warning: no money or stock is wrong,
    // and it heals by itself when the store's clock reaches the counted day
    // (counted_day_starts_at, at most about two days later) — it says why a
    // store's new money is dated ahead and its next count is refused for now.
    // One row per store: the latest day by settlements_store_idx. Today is
    // read from clock_timestamp(), after the statement's snapshot: a count it
    // sees committed before that, and was of a day no later than its own
    // today then. The transaction's now() could be before a store's midnight
    // that a count committed after, and report a count of today.
    sql: `
      SELECT st.tenant_id, 'store:' || st.id AS subject,
             jsonb_build_object('store_id', st.id, 'time_zone', st.time_zone,
                                'latest_counted_day', to_char(c.latest, 'YYYY-MM-DD'),
                                'today_in_time_zone', to_char(store_day(st.time_zone, clock_timestamp()), 'YYYY-MM-DD'),
                                'counted_day_starts_at', to_char(c.latest::timestamp AT TIME ZONE st.time_zone AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS detail
      FROM stores st
      CROSS JOIN LATERAL (
        SELECT s.business_date AS latest FROM settlements s
        WHERE s.tenant_id = st.tenant_id AND s.store_id = st.id
        ORDER BY s.business_date DESC LIMIT 1
      ) c
      WHERE ($1::uuid IS NULL OR st.tenant_id = $1)
        AND c.latest > store_day(st.time_zone, clock_timestamp())`,
  },
];
