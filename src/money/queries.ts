import { sql } from 'kysely';
import { all, andIf, maybeOne, type Tx } from '../core/db.js';
import type { PartyKind, PartyRow, PaymentView } from './money.table.js';

export async function findParty(tx: Tx, tenantId: string, id: string): Promise<PartyRow | undefined> {
  return maybeOne(tx, sql<PartyRow>`SELECT id, kind, name, code, op_id, created_at FROM parties WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

/** Parties in id (creation) order, optionally of one kind. */
export async function listParties(tx: Tx, tenantId: string, kind: PartyKind | undefined, after: string | undefined, limit: number): Promise<PartyRow[]> {
  return all(
    tx,
    sql<PartyRow>`
      SELECT id, kind, name, code, op_id, created_at FROM parties
      WHERE tenant_id = ${tenantId}
        ${andIf(kind, (partyKind) => sql`kind = ${partyKind}`)}
        ${andIf(after, (id) => sql`id > ${id}::uuid`)}
      ORDER BY id LIMIT ${limit}`,
  );
}

/**
 * A payment with its entry's day and, once reverted, the revert (the
 * operation, when, and the day its `payment_revert` entry is booked on).
 * `lock`: FOR UPDATE of the payment row (the revert).
 */
export async function findPayment(tx: Tx, tenantId: string, id: string, lock = false): Promise<PaymentView | undefined> {
  return maybeOne(
    tx,
    sql<PaymentView>`
      SELECT p.id, p.party_id, p.store_id, p.direction, p.method, p.amount, p.reference, p.client_created_at, e.business_date, p.entry_id, p.op_id, p.created_at,
             p.reverted_by_op, p.reverted_at, r.business_date AS revert_business_date
      FROM payments p JOIN journal_entries e ON e.tenant_id = p.tenant_id AND e.id = p.entry_id
      LEFT JOIN journal_entries r ON r.tenant_id = p.tenant_id AND r.subject_id = p.id AND r.kind = 'payment_revert' AND r.op_id = p.reverted_by_op
      WHERE p.tenant_id = ${tenantId} AND p.id = ${id}${lock ? sql` FOR UPDATE OF p` : sql``}`,
  );
}

export interface JournalEntryView {
  id: string;
  kind: string;
  store_id: string | null;
  business_date: string;
  subject_type: string | null;
  subject_id: string | null;
  op_id: string;
  created_at: Date;
  postings: Array<{ account_id: string; account_key: string; amount: number }>;
}

/** The journal entries of an operation with their postings (one query). */
export async function listEntriesOfOperation(tx: Tx, tenantId: string, opId: string): Promise<JournalEntryView[]> {
  return all(
    tx,
    sql<JournalEntryView>`
      SELECT e.id, e.kind, e.store_id, e.business_date, e.subject_type, e.subject_id, e.op_id, e.created_at,
             coalesce((SELECT jsonb_agg(jsonb_build_object('account_id', p.account_id, 'account_key', a.key, 'amount', p.amount) ORDER BY p.id)
                       FROM postings p JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
                       WHERE p.tenant_id = e.tenant_id AND p.entry_id = e.id), '[]'::jsonb) AS postings
      FROM journal_entries e WHERE e.tenant_id = ${tenantId} AND e.op_id = ${opId} ORDER BY e.created_at, e.id`,
  );
}
