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
 * A void's reversing entry: exactly the sale's postings, negated, dated the
 * day of the void (the cash leaves the drawer then): today, or — for a void a
 * till queued offline — the day of its `tillTime`, by the rule of a synced
 * sale (postJournals), and never before the sale's own entry's day (a till
 * clock reset to 1970 cannot take the cash out before it came in). Reversing
 * what was posted — not recomputing it — keeps the two entries exact mirrors.
 */
export async function postSaleVoid(tx: Tx, cmd: Cmd, sale: Pick<SaleForLedger, 'id' | 'store_id'>, tillTime: Date | string | null = null): Promise<PostedEntry | null> {
  const posted = await all(
    tx,
    sql<{ kind: string; store_id: string | null; party_id: string | null; amount: number; business_date: string }>`
      SELECT a.kind, a.store_id, a.party_id, p.amount, e.business_date
      FROM journal_entries e
      JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
      JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
      WHERE e.tenant_id = ${cmd.tenantId} AND e.subject_id = ${sale.id} AND e.kind = 'sale'`,
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
