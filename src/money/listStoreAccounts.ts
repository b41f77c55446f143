import { sql } from 'kysely';
import { all, andIf, type Tx } from '../core/db.js';
import { STORE_ACCOUNT_KINDS } from './money.table.js';

export interface AccountView {
  /** null until the first posting creates the account. */
  id: string | null;
  key: string;
  kind: string;
  balance: number;
  debit_total: number;
  credit_total: number;
}

/** Every account kind of a store with its balance and totals (zeros for one no posting has created yet). */
export async function listStoreAccounts(tx: Tx, tenantId: string, storeId: string): Promise<AccountView[]> {
  return all(
    tx,
    sql<AccountView>`
      SELECT a.id, 'store/' || ${storeId}::text || '/' || k.kind AS key, k.kind,
             coalesce(a.balance, 0)::bigint AS balance, coalesce(a.debit_total, 0)::bigint AS debit_total,
             coalesce(a.credit_total, 0)::bigint AS credit_total
      FROM unnest(${[...STORE_ACCOUNT_KINDS]}::text[]) WITH ORDINALITY AS k(kind, position)
      LEFT JOIN accounts a ON a.tenant_id = ${tenantId} AND a.key = 'store/' || ${storeId}::text || '/' || k.kind
      ORDER BY k.position`,
  );
}

export interface PostingView {
  id: number;
  entry_id: string;
  entry_kind: string;
  business_date: string;
  subject_type: string | null;
  subject_id: string | null;
  amount: number;
  op_id: string;
  created_at: Date;
}

/** An account's postings, newest first, keyset-paginated on the posting id. */
/** `storeIds`: only postings of entries of these stores (a store-scoped token's view); null: all. */
export async function listAccountPostings(
  tx: Tx,
  tenantId: string,
  accountKey: string,
  before: number | undefined,
  limit: number,
  storeIds: readonly string[] | null = null,
): Promise<PostingView[]> {
  return all(
    tx,
    sql<PostingView>`
      SELECT p.id, p.entry_id, e.kind AS entry_kind, e.business_date, e.subject_type, e.subject_id, p.amount, p.op_id, p.created_at
      FROM accounts a
      JOIN postings p ON p.tenant_id = a.tenant_id AND p.account_id = a.id
      JOIN journal_entries e ON e.tenant_id = p.tenant_id AND e.id = p.entry_id
      WHERE a.tenant_id = ${tenantId} AND a.key = ${accountKey}
        ${andIf(before, (id) => sql`p.id < ${id}::bigint`)}
        ${andIf(storeIds, (ids) => sql`e.store_id = ANY(${ids}::uuid[])`)}
      ORDER BY p.id DESC LIMIT ${limit}`,
  );
}
