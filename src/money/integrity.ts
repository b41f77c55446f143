import { bookedPastLatestWithoutCount, moneyBackSql, reversalEarliest, reversalLatestWithoutCount, type IntegrityCheck } from '../integrity/check.js';

/**
 * money_sale_posted's pieces. An entry `e` that counts for the sale it names
 * (its subject_id): a sale or void entry, or a partial return's entry naming
 * the sale itself — a return's entry counts for the return's sale, so one
 * naming something that is not a return counts for what it names.
 */
function saleEntryNamingIt(e: string): string {
  return `(${e}.kind IN ('sale', 'sale_void')
               OR (${e}.kind = 'sale_return' AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE r.tenant_id = ${e}.tenant_id AND r.id = ${e}.subject_id)))`;
}

/** Every entry (id, kind) whose postings count for one sale: those naming it (saleEntryNamingIt) and its returns' entries, by index. */
function saleEntries(tenantId: string, saleId: string): string {
  return `SELECT e.id, e.kind FROM journal_entries e
                              WHERE e.tenant_id = ${tenantId} AND e.subject_id = ${saleId} AND ${saleEntryNamingIt('e')}
                              UNION ALL
                              SELECT e.id, e.kind FROM sale_returns r
                              JOIN journal_entries e ON e.tenant_id = r.tenant_id AND e.subject_id = r.id AND e.kind = 'sale_return'
                              WHERE r.tenant_id = ${tenantId} AND r.sale_id = ${saleId}`;
}

interface AccountColumns {
  store: string;
  kind: string;
  party: string;
}

/** An account's columns as `<prefix>_store_id` … (carried in a row), or as `<alias>.store_id` … (separator '.'). */
function accountColumns(prefix: string, separator = '_'): AccountColumns {
  return { store: `${prefix}${separator}store_id`, kind: `${prefix}${separator}kind`, party: `${prefix}${separator}party_id` };
}

/** True when the account is where sale `s`'s money went: the customer's for credit, else the store's drawer or clearing account for its method. */
function debitAccount(a: AccountColumns, s: string): string {
  return `CASE ${s}.payment_method WHEN 'credit' THEN ${a.party} = ${s}.customer_id
                       ELSE ${a.store} = ${s}.store_id AND ${a.kind} = CASE ${s}.payment_method WHEN 'cash' THEN 'cash_drawer'
                         WHEN 'card' THEN 'card_clearing' WHEN 'mobile' THEN 'mobile_clearing' END END`;
}

/** True when the account is sale `s`'s store's sales revenue. */
function revenueAccount(a: AccountColumns, s: string): string {
  return `${a.store} = ${s}.store_id AND ${a.kind} = 'sales_revenue'`;
}

/**
 * A sale or void entry of sale `sale` (a row with the sale's columns), as SQL:
 * its id, kind, store, business date and created_at, and the day of the
 * sale's entry (its sale_day: the earliest `sale` entry's, for a void's
 * bounds; NULL for a sale entry).
 */
interface BookedEntry {
  sale: string;
  id: string;
  kind: string;
  store: string;
  businessDate: string;
  createdAt: string;
  saleDay: string;
  /** The UTC days of when it was recorded and of its till's moment, when the row has them already (else computed from the sale's columns). */
  days?: { recorded: string; till: string };
}

/** The days an entry may be booked on without a counted day (see money_sale_posted's comment): earliest and latest. */
function bookingBounds(b: BookedEntry): { earliest: string; latest: string } {
  const s = b.sale;
  const recorded = b.days?.recorded ?? `((CASE ${b.kind} WHEN 'sale' THEN ${s}.created_at ELSE coalesce(${s}.voided_at, ${b.createdAt}) END) AT TIME ZONE 'UTC')::date`;
  const till =
    b.days?.till ??
    `((CASE WHEN ${b.kind} = 'sale' AND ${s}.source = 'offline' THEN ${s}.client_created_at
                          WHEN ${b.kind} = 'sale_void' THEN ${s}.void_client_created_at END) AT TIME ZONE 'UTC')::date`;
  const beforeTillDays = `(${b.kind} = 'sale' AND ${s}.created_at < coalesce((SELECT m.run_on FROM schema_migrations m WHERE m.name = '0802_open_business_date'), 'infinity'))`;
  return {
    earliest: `CASE WHEN ${b.kind} <> 'sale' THEN ${reversalEarliest(till, b.saleDay, recorded)}
                    WHEN ${till} IS NULL THEN ${recorded} - 1
                    ELSE least(${till}, ${recorded}) - 1 END`,
    latest: `CASE WHEN ${b.kind} <> 'sale' THEN ${reversalLatestWithoutCount(till, b.saleDay, recorded)}
                  WHEN ${till} IS NULL OR ${beforeTillDays} THEN ${recorded} + 1
                  ELSE least(${till}, ${recorded}) + 1 END`,
  };
}

/** True when the entry is booked where or when it may not be: another store than its sale's, before its earliest day, or after its latest past a day not counted. */
function misbooked(b: BookedEntry): string {
  const { earliest, latest } = bookingBounds(b);
  return `(${b.store} IS DISTINCT FROM ${b.sale}.store_id OR ${b.businessDate} < ${earliest}
                 OR ${bookedPastLatestWithoutCount(`${b.sale}.tenant_id`, `${b.sale}.store_id`, b.businessDate, latest)})`;
}

/** The entry as a misbooked_entries element. */
function misbookedEntry(b: BookedEntry): string {
  const { earliest, latest } = bookingBounds(b);
  return `jsonb_build_object('entry_id', ${b.id}, 'kind', ${b.kind}, 'store_id', ${b.store}, 'business_date', ${b.businessDate},
                                            'earliest', ${earliest}, 'latest_without_count', ${latest})`;
}

/**
 * A fast sale's only entry: a sale entry (the literal, so that its bounds fold
 * to a sale entry's), its days computed once in the row (joined: a sale
 * entry's recorded day is its sale's, its till's day the synced sale's).
 */
const fastEntry: BookedEntry = {
  sale: 'j',
  id: 'j.entry_id',
  kind: `'sale'`,
  store: 'j.entry_store_id',
  businessDate: 'j.business_date',
  createdAt: 'NULL::timestamptz',
  saleDay: 'NULL::date',
  days: { recorded: 'j.recorded_day', till: 'j.till_day' },
};
/** Each of a sale's sale and void entries, walked by index. */
const walkedEntry: BookedEntry = { sale: 'j', id: 'b.id', kind: 'b.kind', store: 'b.store_id', businessDate: 'b.business_date', createdAt: 'b.created_at', saleDay: 'b.sale_day' };

/** Invariants of the double-entry ledger (DESIGN.md principle 2). */
export const moneyChecks: IntegrityCheck[] = [
  {
    name: 'money_journal_entry_balanced',
    severity: 'critical',
    description: 'The postings of every journal entry sum to zero, and there are at least two; no posting is left without its entry.',
    // A FULL JOIN over one pass of the postings: postings whose entry is gone
    // (an orphan the foreign key normally prevents) are found too, kind null.
    sql: `
      SELECT coalesce(e.tenant_id, p.tenant_id) AS tenant_id, coalesce(e.id, p.entry_id)::text AS subject,
             jsonb_build_object('sum', coalesce(p.total, 0), 'postings', coalesce(p.postings, 0), 'kind', e.kind) AS detail
      FROM (SELECT tenant_id, id, kind FROM journal_entries WHERE ($1::uuid IS NULL OR tenant_id = $1)) e
      FULL JOIN (
        SELECT tenant_id, entry_id, sum(amount) AS total, count(*) AS postings
        FROM postings WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, entry_id
      ) p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
      WHERE e.id IS NULL OR coalesce(p.total, 0) <> 0 OR coalesce(p.postings, 0) < 2`,
  },
  {
    name: 'money_account_totals_match_postings',
    severity: 'critical',
    description:
      'Every account balance equals the sum of its postings, and its debit and credit totals the sums of its debits and credits; no posting is left without its account.',
    sql: `
      SELECT coalesce(a.tenant_id, s.tenant_id) AS tenant_id, coalesce(a.id, s.account_id)::text AS subject,
             jsonb_build_object('key', a.key, 'balance', a.balance, 'postings_sum', coalesce(s.total, 0),
                                'debit_total', a.debit_total, 'debits', coalesce(s.debits, 0),
                                'credit_total', a.credit_total, 'credits', coalesce(s.credits, 0)) AS detail
      FROM (SELECT tenant_id, id, key, balance, debit_total, credit_total FROM accounts WHERE ($1::uuid IS NULL OR tenant_id = $1)) a
      FULL JOIN (
        SELECT tenant_id, account_id, sum(amount) AS total,
               sum(amount) FILTER (WHERE amount > 0) AS debits, -sum(amount) FILTER (WHERE amount < 0) AS credits
        FROM postings WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, account_id
      ) s ON s.tenant_id = a.tenant_id AND s.account_id = a.id
      WHERE a.id IS NULL
         OR a.balance <> coalesce(s.total, 0) OR a.debit_total <> coalesce(s.debits, 0) OR a.credit_total <> coalesce(s.credits, 0)`,
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
    description:
      "Every payment has its own journal entry (kind payment, the payment as its subject, booked for the payment's store), moving exactly the payment amount in the payment's direction between the store's account for its method (drawer, clearing or bank) and the party's account, and nothing else; no other payment entry names it, and no payment entry names a payment that does not exist. A reverted payment (reverted_by_op, as its operation's reverted_by) has exactly one reversing entry (kind payment_revert, written by that revert for the payment's store) moving the same amount back between the same two accounts, so the pair nets to zero; a payment that is not reverted has none, and no reversing entry names a payment that does not exist.",
    // The amount alone let an entry moving the money the other way (a payment
    // in booked as one out: the drawer and the customer's debt both wrong by
    // twice the amount), or two payments sharing one entry, pass. And looking
    // from each payment at the one entry it names let a second payment entry
    // naming it (its money posted twice: the drawer, the party's balance and
    // the day's count all off by its amount), or a payment entry whose payment
    // is not there, pass every check: both are found by the entries of kind
    // payment (journal_entries_subject_idx), grouped by the payment they name.
    // A revert (POST /v1/operations/{op_id}/revert) adds a payment_revert
    // entry naming the payment: its postings are read only for payments that
    // are reverted or named by one (a one-time filter in the lateral).
    sql: `
      SELECT pay.tenant_id, pay.id::text AS subject,
             jsonb_build_object('amount', pay.amount, 'direction', pay.direction, 'method', pay.method, 'store_id', pay.store_id, 'entry_id', pay.entry_id,
                                'entry_kind', e.kind, 'entry_subject_id', e.subject_id, 'entry_store_id', e.store_id,
                                'postings', m.postings, 'to_store_account', m.to_store, 'to_party', m.to_party,
                                'payment_entries', named.ids,
                                'reverted_by_op', pay.reverted_by_op, 'reverted_at', pay.reverted_at, 'operation_reverted_by', o.reverted_by,
                                'revert_entries', named.reversal_ids, 'revert_entries_by_revert', coalesce(named.reversals_by_revert, true),
                                'revert_postings', coalesce(r.postings, 0), 'revert_to_store_account', coalesce(r.to_store, 0), 'revert_to_party', coalesce(r.to_party, 0)) AS detail
      FROM payments pay
      LEFT JOIN journal_entries e ON e.tenant_id = pay.tenant_id AND e.id = pay.entry_id
      LEFT JOIN operations o ON o.tenant_id = pay.tenant_id AND o.id = pay.op_id
      CROSS JOIN LATERAL (
        SELECT count(*) AS postings,
               coalesce(sum(p.amount) FILTER (WHERE a.store_id = pay.store_id AND a.kind = CASE pay.method WHEN 'cash' THEN 'cash_drawer'
                                                WHEN 'card' THEN 'card_clearing' WHEN 'mobile' THEN 'mobile_clearing' WHEN 'bank' THEN 'bank' END), 0) AS to_store,
               coalesce(sum(p.amount) FILTER (WHERE a.party_id = pay.party_id), 0) AS to_party
        FROM postings p JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
        WHERE p.tenant_id = pay.tenant_id AND p.entry_id = pay.entry_id
      ) m
      CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE x.kind = 'payment') AS entries,
               coalesce(jsonb_agg(x.id ORDER BY x.id) FILTER (WHERE x.kind = 'payment'), '[]'::jsonb) AS ids,
               count(*) FILTER (WHERE x.kind = 'payment_revert') AS reversals,
               coalesce(jsonb_agg(x.id ORDER BY x.id) FILTER (WHERE x.kind = 'payment_revert'), '[]'::jsonb) AS reversal_ids,
               bool_and(x.op_id IS NOT DISTINCT FROM pay.reverted_by_op AND x.store_id IS NOT DISTINCT FROM pay.store_id)
                 FILTER (WHERE x.kind = 'payment_revert') AS reversals_by_revert
        FROM journal_entries x
        WHERE x.tenant_id = pay.tenant_id AND x.subject_id = pay.id AND x.kind IN ('payment', 'payment_revert')
      ) named
      LEFT JOIN LATERAL (
        SELECT count(*) AS postings,
               coalesce(sum(p.amount) FILTER (WHERE a.store_id = pay.store_id AND a.kind = CASE pay.method WHEN 'cash' THEN 'cash_drawer'
                                                WHEN 'card' THEN 'card_clearing' WHEN 'mobile' THEN 'mobile_clearing' WHEN 'bank' THEN 'bank' END), 0) AS to_store,
               coalesce(sum(p.amount) FILTER (WHERE a.party_id = pay.party_id), 0) AS to_party
        FROM journal_entries x
        JOIN postings p ON p.tenant_id = x.tenant_id AND p.entry_id = x.id
        JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
        WHERE (pay.reverted_by_op IS NOT NULL OR named.reversals > 0)
          AND x.tenant_id = pay.tenant_id AND x.subject_id = pay.id AND x.kind = 'payment_revert'
      ) r ON true
      WHERE ($1::uuid IS NULL OR pay.tenant_id = $1)
        AND (e.id IS NULL OR e.kind <> 'payment' OR e.subject_id IS DISTINCT FROM pay.id OR e.store_id IS DISTINCT FROM pay.store_id
             OR m.postings <> 2
             OR m.to_store <> CASE pay.direction WHEN 'in' THEN pay.amount ELSE -pay.amount END
             OR m.to_party <> CASE pay.direction WHEN 'in' THEN -pay.amount ELSE pay.amount END
             OR named.entries <> 1
             OR o.reverted_by IS DISTINCT FROM pay.reverted_by_op
             OR (pay.reverted_by_op IS NULL) <> (pay.reverted_at IS NULL)
             OR named.reversals <> CASE WHEN pay.reverted_by_op IS NULL THEN 0 ELSE 1 END
             OR NOT coalesce(named.reversals_by_revert, true)
             OR (named.reversals > 0
                 AND (coalesce(r.postings, 0) <> 2
                      OR coalesce(r.to_store, 0) <> CASE pay.direction WHEN 'in' THEN -pay.amount ELSE pay.amount END
                      OR coalesce(r.to_party, 0) <> CASE pay.direction WHEN 'in' THEN pay.amount ELSE -pay.amount END)))
      UNION ALL
      SELECT x.tenant_id, coalesce(x.subject_id::text, min(x.id::text)) AS subject,
             jsonb_build_object('payment_id', x.subject_id, 'payment_exists', false, 'payment_entries', jsonb_agg(x.id ORDER BY x.id)) AS detail
      FROM journal_entries x
      WHERE x.kind IN ('payment', 'payment_revert') AND ($1::uuid IS NULL OR x.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM payments pay WHERE pay.tenant_id = x.tenant_id AND pay.id = x.subject_id)
      GROUP BY x.tenant_id, x.subject_id, CASE WHEN x.subject_id IS NULL THEN x.id END`,
  },
  {
    name: 'money_sale_posted',
    severity: 'critical',
    description:
      "Every sale with a total above zero has exactly one journal entry (kind sale) debiting its total where the money went (the store's drawer or clearing account, or the customer's receivable for credit) and crediting the store's sales revenue; a voided one also exactly one reversing entry (kind sale_void) that nets it, with its partial returns' entries (kind sale_return), to zero on every account — none when its returns had already taken all its money back; a completed one none, and no such entry names a sale that does not exist. Both entries are booked for the sale's store, on a day its booking rule allows: not before the day asked for (a synced sale's till day; a queued void's till day, but not before its sale's day; else the day it was recorded), and after that day's neighbour in any time zone only past a counted day.",
    // Where and when each entry is booked. Its day is the store's day (in the
    // store's time zone, which may have changed since: not kept) of the moment
    // asked for — a synced sale's till time, a queued void's till time but not
    // before its sale's day, else when it was recorded; never after the day it
    // was recorded —, moved past counted days (open_business_date_on: to the
    // store's latest count, then past every counted day). So, zone aside
    // (a store's day of a moment is within a day of its UTC day), it is not
    // before the UTC day of that moment less one, and it is after that day plus
    // one only when the day before it was counted (a settlement of any status:
    // they are never deleted). Entries booked before migration 0802 may
    // have been dated when recorded, even a synced sale's: the rule of a
    // till's day came shortly before it (94aedfe), in a change with no
    // migration of its own, so 0802 is the first mark in the database after
    // it. Theirs is not compared with the till's day (held to the recorded
    // day's bounds, which also hold the till's day: never after it). The mark
    // is when 0802 ran; an app process still running the code before the
    // till's day rule after that moment (a rolling deploy) would have booked
    // a synced sale on its arrival day, found here unless within a day. "Recorded" is the
    // sale's created_at (a void's voided_at), the moment of the transaction
    // that wrote the entry too. Only entries past
    // the upper bound look up a settlement (by settlements_store_idx). The
    // void's bounds and the counted-day test are shared with a partial
    // return's entry (sale_return_matches_lines): reversalEarliest,
    // reversalLatestWithoutCount, bookedPastLatestWithoutCount.
    //
    // The sums per account (what was debited, to which account, to revenue;
    // whether the sale's entries net to zero on every account) are what the
    // check compares; until 2026-12-07 it grouped every posting of every sale,
    // void and return entry by sale and account (a sort of all the postings,
    // on disk) and then by sale, which made it the slowest check, past the
    // 30 s of GET /v1/integrity at ~1M sales under load (bench/RESULTS.md).
    // Now the postings are summed once per entry, in index order: an entry of
    // two postings, one debit and one credit on two accounts, holds its sums
    // per account as they are. A sale whose only entry (walked by subject, with
    // the return entries naming it) is a sale entry like that, and which has no
    // return, is checked from that one row (fast) — its sums cannot differ
    // from a grouping's. Every other sale (voided, returned, no entry, an
    // entry of other postings) is summed as before, from its own entries and
    // postings looked up by index. bench/integrityCheckDiff.ts compares the
    // findings with the grouping's on ~55 corruptions per shop.
    sql: `
      WITH entries AS (
        -- every sale and void entry counted per sale it names, in one walk of journal_entries_subject_idx (with the
        -- return entries that name a sale themselves, whose postings count for it: see saleEntries); an only entry is
        -- kept, with what its booking is checked against
        SELECT e.tenant_id, e.subject_id AS sale_id,
               count(*) FILTER (WHERE e.kind = 'sale') AS sale_entries, count(*) FILTER (WHERE e.kind = 'sale_void') AS void_entries,
               count(*) AS walked, any_value(e.id) AS id, any_value(e.kind) AS kind, any_value(e.store_id) AS store_id,
               any_value(e.business_date) AS business_date
        FROM journal_entries e
        WHERE ${saleEntryNamingIt('e')} AND ($1::uuid IS NULL OR e.tenant_id = $1)
        GROUP BY e.tenant_id, e.subject_id
      ), posted AS (
        -- every entry's postings summed once, in entry order (postings_entry_idx): two of them, one debit and one
        -- credit on two accounts, are a sale entry's postings per account as they are
        SELECT p.tenant_id, p.entry_id, count(*) AS postings, max(p.amount) AS debit, min(p.amount) AS credit,
               any_value(p.account_id) FILTER (WHERE p.amount > 0) AS debit_account, any_value(p.account_id) FILTER (WHERE p.amount < 0) AS credit_account
        FROM postings p
        WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
        GROUP BY p.tenant_id, p.entry_id
      ), entries_posted AS (
        -- an only sale entry beside its postings (before the sales: narrow rows through this join)
        SELECT e.*, p.postings, p.debit, p.credit, p.debit_account, p.credit_account
        FROM entries e
        LEFT JOIN posted p ON e.walked = 1 AND e.kind = 'sale' AND p.tenant_id = e.tenant_id AND p.entry_id = e.id
      ), joined AS (
        SELECT s.tenant_id, s.id, s.store_id, s.status, s.payment_method, s.customer_id, s.total, s.returned_total,
               s.created_at, s.source, s.client_created_at, s.voided_at, s.void_client_created_at,
               e.tenant_id AS e_tenant_id, e.sale_id AS e_sale_id, e.sale_entries, e.void_entries,
               e.id AS entry_id, e.kind, e.store_id AS entry_store_id, e.business_date, e.debit, e.credit,
               (s.created_at AT TIME ZONE 'UTC')::date AS recorded_day,
               (CASE WHEN s.source = 'offline' THEN s.client_created_at END AT TIME ZONE 'UTC')::date AS till_day,
               da.store_id AS da_store_id, da.kind AS da_kind, da.party_id AS da_party_id,
               ca.store_id AS ca_store_id, ca.kind AS ca_kind, ca.party_id AS ca_party_id,
               s.id IS NOT NULL AND e.walked = 1 AND e.kind = 'sale' AND rs.sale_id IS NULL
                 AND coalesce(e.postings = 2 AND e.debit > 0 AND e.credit < 0 AND e.debit_account <> e.credit_account, false) AS fast
        FROM (SELECT * FROM sales WHERE ($1::uuid IS NULL OR tenant_id = $1)) s
        FULL JOIN entries_posted e ON e.tenant_id = s.tenant_id AND e.sale_id = s.id
        LEFT JOIN (SELECT DISTINCT tenant_id, sale_id FROM sale_returns WHERE ($1::uuid IS NULL OR tenant_id = $1)) rs
          ON rs.tenant_id = s.tenant_id AND rs.sale_id = s.id
        LEFT JOIN accounts da ON da.tenant_id = s.tenant_id AND da.id = e.debit_account
        LEFT JOIN accounts ca ON ca.tenant_id = s.tenant_id AND ca.id = e.credit_account
        OFFSET 0
      ), per_sale AS (
        -- a sale of one sale entry of two postings (fast): its sums and its entry's booking from that row; any other
        -- sale: from its entries and their postings, looked up by index
        SELECT j.*,
               CASE WHEN j.fast THEN ARRAY[j.debit,
                                           CASE WHEN ${debitAccount(accountColumns('j.da'), 'j')} THEN j.debit ELSE 0 END
                                             + CASE WHEN ${debitAccount(accountColumns('j.ca'), 'j')} THEN j.credit ELSE 0 END,
                                           CASE WHEN ${revenueAccount(accountColumns('j.da'), 'j')} THEN j.debit ELSE 0 END
                                             + CASE WHEN ${revenueAccount(accountColumns('j.ca'), 'j')} THEN j.credit ELSE 0 END,
                                           1]::numeric[]
                    WHEN j.id IS NOT NULL THEN (
                      SELECT ARRAY[coalesce(sum(l.posted) FILTER (WHERE l.posted > 0), 0),
                                   coalesce(sum(l.posted) FILTER (WHERE ${debitAccount(accountColumns('a', '.'), 'j')}), 0),
                                   coalesce(sum(l.posted) FILTER (WHERE ${revenueAccount(accountColumns('a', '.'), 'j')}), 0),
                                   CASE WHEN coalesce(bool_or(l.net <> 0), false) THEN 1 ELSE 0 END]
                      FROM (
                        SELECT p.account_id, coalesce(sum(p.amount) FILTER (WHERE x.kind = 'sale'), 0) AS posted, sum(p.amount) AS net
                        FROM (${saleEntries('j.tenant_id', 'j.id')}) x
                        JOIN postings p ON p.tenant_id = j.tenant_id AND p.entry_id = x.id
                        GROUP BY p.account_id
                      ) l
                      LEFT JOIN accounts a ON a.tenant_id = j.tenant_id AND a.id = l.account_id) END AS sums,
               CASE WHEN j.fast THEN CASE WHEN ${misbooked(fastEntry)} THEN jsonb_build_array(${misbookedEntry(fastEntry)}) END
                    WHEN j.id IS NOT NULL THEN (
                      SELECT jsonb_agg(${misbookedEntry(walkedEntry)} ORDER BY b.kind, b.id) FILTER (WHERE ${misbooked(walkedEntry)})
                      FROM (
                        SELECT e.id, e.kind, e.store_id, e.business_date, e.created_at,
                               min(e.business_date) FILTER (WHERE e.kind = 'sale') OVER () AS sale_day
                        FROM journal_entries e
                        WHERE e.tenant_id = j.tenant_id AND e.subject_id = j.id AND e.kind IN ('sale', 'sale_void')
                      ) b) END AS misbooked
        FROM joined j
        OFFSET 0
      )
      -- a sale beside its entries; entries naming a sale that does not exist on their own
      SELECT coalesce(s.tenant_id, s.e_tenant_id) AS tenant_id, coalesce(s.id, s.e_sale_id)::text AS subject,
             CASE WHEN s.id IS NULL
                  THEN jsonb_build_object('sale_id', s.e_sale_id, 'sale_entries', s.sale_entries, 'void_entries', s.void_entries, 'sale_exists', false)
                  ELSE jsonb_build_object('sale_id', s.id, 'store_id', s.store_id, 'status', s.status, 'payment_method', s.payment_method, 'total', s.total,
                                          'returned_total', s.returned_total, 'sale_entries', coalesce(s.sale_entries, 0), 'void_entries', coalesce(s.void_entries, 0),
                                          'debited', s.sums[1], 'to_debit_account', s.sums[2], 'to_revenue', s.sums[3],
                                          'void_nets_to_zero', s.sums[4] = 0, 'misbooked_entries', coalesce(s.misbooked, '[]'::jsonb)) END AS detail
      FROM per_sale s
      WHERE CASE WHEN s.id IS NULL THEN s.sale_entries + s.void_entries > 0
                 ELSE s.misbooked IS NOT NULL
                      OR coalesce(s.sale_entries, 0) <> CASE WHEN s.total > 0 THEN 1 ELSE 0 END
                      OR coalesce(s.void_entries, 0) <> CASE WHEN s.total > s.returned_total AND s.status = 'voided' THEN 1 ELSE 0 END
                      OR (s.total > 0 AND (s.sums[1] <> s.total OR s.sums[2] <> s.total OR s.sums[3] <> -s.total))
                      OR (s.status = 'voided' AND s.sums[4] = 1) END`,
  },
  {
    name: 'money_purchase_posted',
    severity: 'critical',
    description:
      "Every purchase (a stock receipt with a supplier and costs) names a supplier, has its lines, each line's total its quantity at its unit cost (as a sale line's: pieces exactly, grams or millimetres per 1000 rounded half up), and a total equal to their sum; the receipt's stock ledger rows (kind receipt, of its operation) hold exactly its lines' quantities, in its store. A purchase with a total above zero has exactly one journal entry (kind purchase, the purchase its subject, for its store, written by its operation) that debits the store's inventory account and credits the supplier's account by the total, and nothing else; one of total zero has none. No purchase entry names a purchase that does not exist.",
    // From each purchase: its supplier, lines, entry, every purchase entry
    // naming it (journal_entries_subject_idx: its money posted twice is found
    // too) and its receipt's stock rows (stock_ledger_op_idx). Then the
    // purchase entries naming no purchase (the purchase row gone, or an entry
    // written without one): what we owe a supplier with no receipt behind it.
    sql: `
      SELECT pu.tenant_id, pu.id::text AS subject,
             jsonb_build_object('store_id', pu.store_id, 'supplier_id', pu.supplier_id, 'supplier_kind', pa.kind, 'total', pu.total,
                                'lines', l.lines, 'sum_of_lines', l.sum_of_lines, 'lines_off', l.lines_off,
                                'entry_id', pu.entry_id, 'entry_kind', e.kind, 'entry_subject_id', e.subject_id, 'entry_store_id', e.store_id,
                                'postings', m.postings, 'to_inventory', m.to_inventory, 'to_supplier', m.to_supplier,
                                'purchase_entries', named.ids, 'stock_off', st.off) AS detail
      FROM purchases pu
      LEFT JOIN parties pa ON pa.tenant_id = pu.tenant_id AND pa.id = pu.supplier_id
      LEFT JOIN journal_entries e ON e.tenant_id = pu.tenant_id AND e.id = pu.entry_id
      CROSS JOIN LATERAL (
        SELECT count(*) AS lines, coalesce(sum(li.line_total), 0) AS sum_of_lines,
               coalesce(jsonb_agg(jsonb_build_object('line_number', li.line_number, 'line_total', li.line_total, 'at_cost', x.at_cost) ORDER BY li.line_number)
                          FILTER (WHERE li.line_total IS DISTINCT FROM x.at_cost), '[]'::jsonb) AS lines_off
        FROM purchase_lines li
        LEFT JOIN skus k ON k.tenant_id = li.tenant_id AND k.id = li.sku_id
        CROSS JOIN LATERAL (
          SELECT CASE WHEN k.unit = 'piece' THEN li.quantity::numeric * li.unit_cost
                      WHEN k.unit IN ('kg', 'metre') THEN div(li.quantity::numeric * li.unit_cost * 2 + 1000, 2000) END AS at_cost
        ) x
        WHERE li.tenant_id = pu.tenant_id AND li.purchase_id = pu.id
      ) l
      CROSS JOIN LATERAL (
        SELECT count(*) AS postings,
               coalesce(sum(p.amount) FILTER (WHERE a.store_id = pu.store_id AND a.kind = 'inventory'), 0) AS to_inventory,
               coalesce(sum(p.amount) FILTER (WHERE a.party_id = pu.supplier_id), 0) AS to_supplier
        FROM postings p JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
        WHERE p.tenant_id = pu.tenant_id AND p.entry_id = pu.entry_id
      ) m
      CROSS JOIN LATERAL (
        SELECT count(*) AS entries, coalesce(jsonb_agg(x.id ORDER BY x.id), '[]'::jsonb) AS ids
        FROM journal_entries x
        WHERE x.tenant_id = pu.tenant_id AND x.subject_id = pu.id AND x.kind = 'purchase'
      ) named
      CROSS JOIN LATERAL (
        SELECT coalesce(jsonb_agg(jsonb_build_object('store_id', q.store_id, 'sku_id', q.sku_id, 'lines', q.lines, 'receipt_rows', q.rows) ORDER BY q.store_id, q.sku_id),
                        '[]'::jsonb) AS off
        FROM (
          SELECT moved.store_id, moved.sku_id, sum(moved.lines) AS lines, sum(moved.rows) AS rows
          FROM (
            SELECT pu.store_id, li.sku_id, li.quantity AS lines, 0 AS rows
            FROM purchase_lines li WHERE li.tenant_id = pu.tenant_id AND li.purchase_id = pu.id
            UNION ALL
            SELECT sl.store_id, sl.sku_id, 0, sl.quantity_change
            FROM stock_ledger sl WHERE sl.tenant_id = pu.tenant_id AND sl.op_id = pu.op_id AND sl.kind = 'receipt'
          ) moved
          GROUP BY moved.store_id, moved.sku_id
          HAVING sum(moved.lines) <> sum(moved.rows)
        ) q
      ) st
      WHERE ($1::uuid IS NULL OR pu.tenant_id = $1)
        AND (pa.kind IS DISTINCT FROM 'supplier'
             OR l.lines = 0 OR l.sum_of_lines <> pu.total OR l.lines_off <> '[]'::jsonb
             OR st.off <> '[]'::jsonb
             OR named.entries <> CASE WHEN pu.total = 0 THEN 0 ELSE 1 END
             OR (pu.total > 0
                 AND (e.id IS NULL OR e.kind <> 'purchase' OR e.subject_id IS DISTINCT FROM pu.id OR e.store_id IS DISTINCT FROM pu.store_id
                      OR m.postings <> 2 OR m.to_inventory <> pu.total OR m.to_supplier <> -pu.total)))
      UNION ALL
      SELECT x.tenant_id, coalesce(x.subject_id::text, min(x.id::text)) AS subject,
             jsonb_build_object('purchase_id', x.subject_id, 'purchase_exists', false, 'purchase_entries', jsonb_agg(x.id ORDER BY x.id)) AS detail
      FROM journal_entries x
      WHERE x.kind = 'purchase' AND ($1::uuid IS NULL OR x.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM purchases pu WHERE pu.tenant_id = x.tenant_id AND pu.id = x.subject_id)
      GROUP BY x.tenant_id, x.subject_id, CASE WHEN x.subject_id IS NULL THEN x.id END`,
  },
  {
    name: 'purchase_return_matches_lines',
    severity: 'critical',
    description:
      "Every return to a supplier is of its purchase's store and supplier and has lines, each of one of the purchase's lines (its SKU and unit cost; no piece-tracked SKU), whose line_total is lineTotal(what the line's returns sent back through this one) − lineTotal(what they sent back before it) at the line's cost, summing to the return's credit_total; no purchase line is sent back beyond what it bought; the return's stock ledger rows (kind supplier_return, its operation) take exactly its lines' quantities per SKU out of the purchase's store, and none elsewhere; a return crediting money has exactly one purchase_return journal entry (its entry_id: its operation, the purchase's store) debiting the supplier's account and crediting the store's inventory account by the credit and nothing else, one crediting nothing has none, and no such entry names a return that does not exist; the purchase's returned_total is the sum of its returns' credits.",
    // The credit as the purchase line's total is computed (money_purchase_posted,
    // sale_total_matches_items): pieces exactly, grams or millimetres per 1000
    // rounded half up — cumulatively per purchase line, in return order.
    sql: `
      WITH item AS (
        SELECT rl.tenant_id, rl.return_id, rl.purchase_id, rl.line_number, rl.sku_id, rl.quantity, rl.unit_cost, rl.line_total,
               r.purchase_id AS return_purchase_id, li.sku_id AS line_sku_id, li.unit_cost AS line_unit_cost, li.quantity AS line_quantity,
               k.unit, k.tracks_pieces,
               sum(rl.quantity) OVER (PARTITION BY rl.tenant_id, rl.purchase_id, rl.line_number ORDER BY r.return_number) AS through,
               sum(rl.quantity) OVER (PARTITION BY rl.tenant_id, rl.purchase_id, rl.line_number) AS line_returned
        FROM purchase_return_lines rl
        JOIN purchase_returns r ON r.tenant_id = rl.tenant_id AND r.id = rl.return_id
        LEFT JOIN purchase_lines li ON li.tenant_id = rl.tenant_id AND li.purchase_id = rl.purchase_id AND li.line_number = rl.line_number
        LEFT JOIN skus k ON k.tenant_id = li.tenant_id AND k.id = li.sku_id
        WHERE ($1::uuid IS NULL OR rl.tenant_id = $1)
      ), priced AS (
        SELECT item.*,
               ${moneyBackSql('unit', 'through', 'quantity', 'line_unit_cost')} AS at_cost
        FROM item
      ), lines AS (
        SELECT tenant_id, return_id, count(*) AS lines, sum(line_total) AS credits,
               coalesce(jsonb_agg(jsonb_build_object('line_number', line_number, 'sku_id', sku_id, 'quantity', quantity, 'unit_cost', unit_cost,
                                                     'line_total', line_total, 'at_cost', at_cost, 'line_returned', line_returned, 'line_quantity', line_quantity)
                                 ORDER BY line_number)
                          FILTER (WHERE line_total IS DISTINCT FROM at_cost OR purchase_id IS DISTINCT FROM return_purchase_id
                                        OR sku_id IS DISTINCT FROM line_sku_id OR unit_cost IS DISTINCT FROM line_unit_cost
                                        OR tracks_pieces IS DISTINCT FROM false OR line_returned > line_quantity), '[]'::jsonb) AS lines_off
        FROM priced GROUP BY tenant_id, return_id
      ), per_sku AS (
        SELECT tenant_id, return_id, sku_id, sum(quantity) AS quantity FROM purchase_return_lines
        WHERE ($1::uuid IS NULL OR tenant_id = $1) GROUP BY tenant_id, return_id, sku_id
      ), stock_off AS (
        SELECT coalesce(q.tenant_id, m.tenant_id) AS tenant_id, coalesce(q.return_id, m.return_id) AS return_id,
               jsonb_agg(jsonb_build_object('sku_id', coalesce(q.sku_id, m.sku_id), 'lines', coalesce(q.quantity, 0),
                                            'ledger', coalesce(m.quantity, 0), 'elsewhere', coalesce(m.elsewhere, 0))
                         ORDER BY coalesce(q.sku_id, m.sku_id)) AS skus
        FROM per_sku q
        FULL JOIN (
          SELECT r.tenant_id, r.id AS return_id, l.sku_id,
                 coalesce(-sum(l.quantity_change) FILTER (WHERE l.store_id = r.store_id), 0) AS quantity,
                 count(*) FILTER (WHERE l.store_id <> r.store_id) AS elsewhere
          FROM purchase_returns r
          JOIN stock_ledger l ON l.tenant_id = r.tenant_id AND l.op_id = r.op_id AND l.kind = 'supplier_return'
          WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
          GROUP BY r.tenant_id, r.id, l.sku_id
        ) m ON m.tenant_id = q.tenant_id AND m.return_id = q.return_id AND m.sku_id = q.sku_id
        WHERE coalesce(q.quantity, 0) <> coalesce(m.quantity, 0) OR coalesce(m.elsewhere, 0) <> 0
        GROUP BY 1, 2
      ), entries AS (
        SELECT e.tenant_id, e.subject_id AS return_id, count(DISTINCT e.id) AS entries, jsonb_agg(DISTINCT e.id) AS ids,
               bool_and(e.id = r.entry_id AND e.op_id = r.op_id AND e.store_id IS NOT DISTINCT FROM pu.store_id) AS own,
               count(p.*) AS postings,
               coalesce(sum(p.amount) FILTER (WHERE a.party_id = pu.supplier_id), 0) AS to_supplier,
               coalesce(sum(p.amount) FILTER (WHERE a.store_id = pu.store_id AND a.kind = 'inventory'), 0) AS to_inventory
        FROM journal_entries e
        JOIN purchase_returns r ON r.tenant_id = e.tenant_id AND r.id = e.subject_id
        JOIN purchases pu ON pu.tenant_id = r.tenant_id AND pu.id = r.purchase_id
        LEFT JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
        LEFT JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
        WHERE e.kind = 'purchase_return' AND ($1::uuid IS NULL OR e.tenant_id = $1)
        GROUP BY e.tenant_id, e.subject_id
      ), per_purchase AS (
        SELECT tenant_id, purchase_id, sum(credit_total) AS credits FROM purchase_returns WHERE ($1::uuid IS NULL OR tenant_id = $1) GROUP BY tenant_id, purchase_id
      )
      SELECT r.tenant_id, r.id::text AS subject,
             jsonb_build_object('return_id', r.id, 'purchase_id', r.purchase_id, 'store_id', r.store_id, 'purchase_store_id', pu.store_id,
                                'supplier_id', r.supplier_id, 'purchase_supplier_id', pu.supplier_id,
                                'credit_total', r.credit_total, 'lines', coalesce(l.lines, 0), 'line_credits', coalesce(l.credits, 0), 'lines_off', coalesce(l.lines_off, '[]'::jsonb),
                                'stock_off', coalesce(so.skus, '[]'::jsonb), 'entry_id', r.entry_id, 'entries', coalesce(e.entries, 0), 'entry_ids', coalesce(e.ids, '[]'::jsonb),
                                'entry_by_return', coalesce(e.own, true), 'postings', coalesce(e.postings, 0),
                                'to_supplier', coalesce(e.to_supplier, 0), 'to_inventory', coalesce(e.to_inventory, 0),
                                'purchase_returned_total', pu.returned_total, 'purchase_credits', pp.credits) AS detail
      FROM purchase_returns r
      JOIN purchases pu ON pu.tenant_id = r.tenant_id AND pu.id = r.purchase_id
      JOIN per_purchase pp ON pp.tenant_id = r.tenant_id AND pp.purchase_id = r.purchase_id
      LEFT JOIN lines l ON l.tenant_id = r.tenant_id AND l.return_id = r.id
      LEFT JOIN stock_off so ON so.tenant_id = r.tenant_id AND so.return_id = r.id
      LEFT JOIN entries e ON e.tenant_id = r.tenant_id AND e.return_id = r.id
      WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
        AND (r.store_id <> pu.store_id OR r.supplier_id <> pu.supplier_id
             OR coalesce(l.lines, 0) = 0 OR l.credits <> r.credit_total OR l.lines_off <> '[]'::jsonb
             OR so.return_id IS NOT NULL
             OR coalesce(e.entries, 0) <> CASE WHEN r.credit_total > 0 THEN 1 ELSE 0 END
             OR NOT coalesce(e.own, true)
             OR (r.credit_total > 0 AND (e.postings <> 2 OR e.to_supplier <> r.credit_total OR e.to_inventory <> -r.credit_total))
             OR pu.returned_total <> pp.credits)
      UNION ALL
      -- a purchase that says its returns were credited, with no returns
      SELECT pu.tenant_id, pu.id::text, jsonb_build_object('purchase_id', pu.id, 'purchase_returned_total', pu.returned_total, 'returns', 0)
      FROM purchases pu
      WHERE ($1::uuid IS NULL OR pu.tenant_id = $1) AND pu.returned_total <> 0
        AND NOT EXISTS (SELECT 1 FROM purchase_returns r WHERE r.tenant_id = pu.tenant_id AND r.purchase_id = pu.id)
      UNION ALL
      -- a purchase_return entry naming no return
      SELECT e.tenant_id, e.id::text, jsonb_build_object('entry_id', e.id, 'subject_id', e.subject_id, 'return_exists', false)
      FROM journal_entries e
      WHERE e.kind = 'purchase_return' AND ($1::uuid IS NULL OR e.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM purchase_returns r WHERE r.tenant_id = e.tenant_id AND r.id = e.subject_id)`,
  },
];
