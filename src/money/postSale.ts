import { sql } from 'kysely';
import { all, type Tx } from '../core/db.js';
import type { AccountRef } from './journal.js';
import { storeAccountForMethod, type StoreAccountKind } from './money.table.js';
import { postJournal, type JournalEntryInput, type PostedEntry } from './postJournal.js';

type Cmd = { tenantId: string; opId: string };

interface SaleForLedger {
  id: string;
  store_id: string;
  payment_method: 'cash' | 'card' | 'mobile' | 'credit';
  customer_id: string | null;
  total: number;
  source?: 'online' | 'offline';
  /** When the till made the sale (offline sales synced later). */
  client_created_at?: Date | string | null;
}

/** Where a sale's money goes: the drawer (cash), a clearing account (card, mobile), or the customer's receivable (credit). */
export function saleDebitAccount(sale: Pick<SaleForLedger, 'store_id' | 'payment_method' | 'customer_id'>): AccountRef {
  const kind = storeAccountForMethod(sale.payment_method);
  if (kind === null) {
    if (sale.customer_id === null) throw new Error('a credit sale without a customer reached the ledger');
    return { partyId: sale.customer_id };
  }
  return { storeId: sale.store_id, kind };
}

const REVENUE: StoreAccountKind = 'sales_revenue';

/**
 * The sale's journal entry (pure): debit where the money went, credit the
 * store's sales revenue. A sale with a total of 0 moves no money: no entry.
 * It is written in the sale's own transaction — by the sale writer, with the
 * entries of every sale of a group-commit batch in one statement (postJournals);
 * balances move relatively, so many sales in one transaction each add their own amount.
 */
export function saleJournalEntry(sale: SaleForLedger): JournalEntryInput | null {
  if (sale.total === 0) return null;
  return {
    kind: 'sale',
    storeId: sale.store_id,
    // An offline sale synced later counts for the day the till took the money
    // (postJournals: the store's day of that moment in its time zone, by open_business_date — never a future day,
    // never before the store's latest count).
    ...(sale.source === 'offline' && sale.client_created_at ? { tillTime: sale.client_created_at } : {}),
    subjectType: 'sale',
    subjectId: sale.id,
    postings: [
      { account: saleDebitAccount(sale), amount: sale.total },
      { account: { storeId: sale.store_id, kind: REVENUE }, amount: -sale.total },
    ],
  };
}

/**
 * A void's reversing entry: exactly what is left of the sale's postings —
 * the sale's entry plus the entries of its partial returns (kind
 * sale_return, postSaleReturn) — negated, dated the day of the void (the
 * cash leaves the drawer then): today, or — for a void a till queued offline
 * — the day of its `tillTime`, by the rule of a synced sale (postJournals),
 * and never before the sale's own entry's day (a till clock reset to 1970
 * cannot take the cash out before it came in). Reversing what was posted —
 * not recomputing it — keeps the entries exact mirrors: the sale's accounts
 * net to zero. A sale whose returns already took all its money back (or one
 * that moved none) needs no entry: null.
 */
export async function postSaleVoid(tx: Tx, cmd: Cmd, sale: Pick<SaleForLedger, 'id' | 'store_id'>, tillTime: Date | string | null = null): Promise<PostedEntry | null> {
  const posted = await all(
    tx,
    sql<{ kind: string; store_id: string | null; party_id: string | null; amount: number; business_date: string }>`
      SELECT a.kind, a.store_id, a.party_id, sum(p.amount)::bigint AS amount,
             (SELECT min(s.business_date) FROM journal_entries s WHERE s.tenant_id = ${cmd.tenantId} AND s.subject_id = ${sale.id} AND s.kind = 'sale')::text AS business_date
      FROM journal_entries e
      JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
      JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
      WHERE e.tenant_id = ${cmd.tenantId}
        -- the entries of the sale and of its returns, by subject (journal_entries_subject_idx): the OR below alone is
        -- no index condition, and every void read all of the tenant's entries (src/sales/returnPlans.int.spec.ts)
        AND e.subject_id = ANY (ARRAY(SELECT ${sale.id}::uuid UNION ALL SELECT r.id FROM sale_returns r WHERE r.tenant_id = ${cmd.tenantId} AND r.sale_id = ${sale.id}))
        AND ((e.subject_id = ${sale.id} AND e.kind = 'sale')
             OR (e.kind = 'sale_return' AND e.subject_id IN (SELECT r.id FROM sale_returns r WHERE r.tenant_id = ${cmd.tenantId} AND r.sale_id = ${sale.id})))
      GROUP BY a.id, a.kind, a.store_id, a.party_id
      HAVING sum(p.amount) <> 0`,
  );
  if (posted.length === 0) return null;
  return postJournal(tx, cmd, {
    kind: 'sale_void',
    storeId: sale.store_id,
    subjectType: 'sale',
    subjectId: sale.id,
    tillTime,
    notBefore: posted[0]!.business_date,
    postings: posted.map((posting) => ({
      account: posting.party_id !== null ? { partyId: posting.party_id } : { storeId: posting.store_id!, kind: posting.kind as StoreAccountKind },
      amount: -posting.amount,
    })),
  });
}

/**
 * A partial return's entry: `refund` out of where the sale's money went (the
 * drawer for cash, the clearing account for card and mobile, the customer's
 * receivable for credit) and back out of the store's sales revenue — the
 * sale's postings, for that part, reversed. Dated like a void's entry (today,
 * or the day of a till's `tillTime`, never before the sale's own day). A
 * refund of 0 moves no money: no entry (null). Subject: the return.
 */
export async function postSaleReturn(
  tx: Tx,
  cmd: Cmd,
  sale: Pick<SaleForLedger, 'id' | 'store_id' | 'payment_method' | 'customer_id'>,
  saleReturn: { id: string; refund: number },
  tillTime: Date | string | null = null,
): Promise<PostedEntry | null> {
  if (saleReturn.refund === 0) return null;
  const saleDay = await all(
    tx,
    sql<{ business_date: string }>`
      SELECT business_date::text AS business_date FROM journal_entries
      WHERE tenant_id = ${cmd.tenantId} AND subject_id = ${sale.id} AND kind = 'sale' LIMIT 1`,
  );
  return postJournal(tx, cmd, {
    kind: 'sale_return',
    storeId: sale.store_id,
    subjectType: 'sale_return',
    subjectId: saleReturn.id,
    tillTime,
    ...(saleDay[0] ? { notBefore: saleDay[0].business_date } : {}),
    postings: [
      { account: saleDebitAccount(sale), amount: -saleReturn.refund },
      { account: { storeId: sale.store_id, kind: REVENUE }, amount: saleReturn.refund },
    ],
  });
}
