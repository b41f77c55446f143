import { sql } from 'kysely';
import { all, type Tx } from '../core/db.js';
import { assert } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { balanceJournal, type PostingInput } from './journal.js';

export interface JournalEntryInput {
  /** What moved the money: `sale`, `sale_void`, `payment`, `consignment` … */
  kind: string;
  /** The store whose settlement the entry counts in (null for none). */
  storeId?: string | null;
  /** 'YYYY-MM-DD'; default (and latest): today (UTC) by the database clock — no entry counts for a future day. */
  businessDate?: string;
  subjectType?: string;
  subjectId?: string;
  memo?: string;
  postings: PostingInput[];
}

export interface PostedEntry {
  entryId: string;
  postings: Array<{ account_id: string; amount: number }>;
}

/**
 * Writes one journal entry, its postings and the balances of its accounts, in
 * the caller's transaction, in ONE statement:
 *
 *   - the entry row;
 *   - one upsert per account, in account-key order, that moves `balance`,
 *     `debit_total` and `credit_total` relatively (`balance = balance + $1`):
 *     no read-then-write, so concurrent entries — and many entries in one
 *     group-committed transaction under savepoints — each add their own amount;
 *     a store account is created by the first posting that names it;
 *   - the postings.
 *
 * Unbalanced postings are a bug in the caller (assert); the database checks the
 * same rule again at commit (deferred constraint trigger `journal_entry_balanced`).
 * Party accounts must exist (created with the party): callers validate parties.
 */
export async function postJournal(tx: Tx, cmd: { tenantId: string; opId: string }, input: JournalEntryInput): Promise<PostedEntry> {
  const checked = balanceJournal(input.postings);
  assert(checked.ok, `journal entry ${input.kind} is not double-entry: ${checked.ok ? '' : checked.reason}`);
  const entryId = newId();
  const lines = checked.postings.map((posting) => ({
    new_id: newId(),
    key: posting.key,
    kind: 'partyId' in posting.account ? null : posting.account.kind,
    store_id: 'partyId' in posting.account ? null : posting.account.storeId,
    party_id: 'partyId' in posting.account ? posting.account.partyId : null,
    amount: posting.amount,
    debit: posting.debit,
    credit: posting.credit,
  }));
  const rows = await all(
    tx,
    sql<{ account_id: string; amount: number }>`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(lines)}::jsonb)
          AS i(new_id uuid, key text, kind text, store_id uuid, party_id uuid, amount bigint, debit bigint, credit bigint)
      ), entry AS (
        INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, memo, op_id)
        VALUES (${cmd.tenantId}, ${entryId}, ${input.kind}, ${input.storeId ?? null},
                open_business_date(${cmd.tenantId}::uuid, ${input.storeId ?? null}::uuid, ${input.businessDate ?? null}::date),
                ${input.subjectType ?? null}, ${input.subjectId ?? null}, ${input.memo ?? null}, ${cmd.opId})
        RETURNING id
      ), moved AS (
        INSERT INTO accounts AS a (tenant_id, id, key, kind, store_id, party_id, balance, debit_total, credit_total, op_id)
        SELECT ${cmd.tenantId}, i.new_id, i.key,
               coalesce(i.kind, CASE p.kind WHEN 'customer' THEN 'receivable' WHEN 'supplier' THEN 'payable' END),
               i.store_id, i.party_id, i.amount, i.debit, i.credit, ${cmd.opId}
        FROM input i LEFT JOIN parties p ON p.tenant_id = ${cmd.tenantId} AND p.id = i.party_id
        ORDER BY i.key
        ON CONFLICT (tenant_id, key) DO UPDATE
          SET balance = a.balance + EXCLUDED.balance,
              debit_total = a.debit_total + EXCLUDED.debit_total,
              credit_total = a.credit_total + EXCLUDED.credit_total,
              updated_at = now()
        RETURNING a.id, a.key
      )
      INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id)
      SELECT ${cmd.tenantId}, (SELECT id FROM entry), moved.id, i.amount, ${cmd.opId}
      FROM input i JOIN moved ON moved.key = i.key
      RETURNING account_id, amount`,
  );
  assert(rows.length === lines.length, 'every posting found its account');
  return { entryId, postings: rows };
}
