import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, maybeOne } from '../core/db.js';
import { assert } from '../core/errors.js';
import type { RevertHandler, RevertTarget } from '../operations/revertOperation.js';
import type { StoreAccountKind } from './money.table.js';
import { postJournal } from './postJournal.js';
import { findPayment } from './queries.js';

/**
 * Reverts a payment (its `payment.create` operation): the payment its
 * operation created — found by the operation's id, through its `payment`
 * entry (journal_entries_op_idx) — is locked, a `payment_revert` entry moves
 * exactly that entry's postings back (read from the ledger and negated, not
 * recomputed, as a void's), and the payment is marked `reverted_by_op` /
 * `reverted_at` (once; the database allows nothing else). The original
 * payment, entry and postings stay as they are. The entry is dated like
 * every store entry (postJournals → open_business_date: today, or the next
 * day with no count when today is counted), so its cash is in the count of
 * the day it is booked on, as `other_cash` (drawer_movements: neither cash
 * received nor paid out that day). Runs inside the revert command, which
 * holds the operation's row: two reverts of one payment queue up there.
 */
async function revertPayment(cmd: Command, target: RevertTarget): Promise<void> {
  const created = await maybeOne(
    cmd.tx,
    sql<{ subject_id: string }>`SELECT subject_id FROM journal_entries WHERE tenant_id = ${cmd.tenantId} AND op_id = ${target.id} AND kind = 'payment'`,
  );
  assert(created !== undefined, `operation ${target.id} created a payment`);
  const before = await findPayment(cmd.tx, cmd.tenantId, created.subject_id, true);
  assert(before !== undefined && before.op_id === target.id, `payment ${created.subject_id} was created by operation ${target.id}`);
  assert(before.reverted_by_op === null, 'a payment whose operation is not reverted is not reverted');
  const posted = await all(
    cmd.tx,
    sql<{ kind: string; store_id: string | null; party_id: string | null; amount: number }>`
      SELECT a.kind, a.store_id, a.party_id, p.amount
      FROM postings p JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
      WHERE p.tenant_id = ${cmd.tenantId} AND p.entry_id = ${before.entry_id} ORDER BY p.id`,
  );
  const entry = await postJournal(cmd.tx, cmd, {
    kind: 'payment_revert',
    storeId: before.store_id,
    subjectType: 'payment',
    subjectId: before.id,
    postings: posted.map((posting) => ({
      account: posting.party_id !== null ? { partyId: posting.party_id } : { storeId: posting.store_id!, kind: posting.kind as StoreAccountKind },
      amount: -posting.amount,
    })),
  });
  const marked = await sql`
    UPDATE payments SET reverted_by_op = ${cmd.opId}, reverted_at = clock_timestamp()
    WHERE tenant_id = ${cmd.tenantId} AND id = ${before.id} AND reverted_by_op IS NULL`.execute(cmd.tx);
  assert(marked.numAffectedRows === 1n, 'payment locked and not reverted');
  const after = await findPayment(cmd.tx, cmd.tenantId, before.id);
  assert(after !== undefined && after.revert_business_date === entry.businessDate, 'the payment names its reversal');
  cmd.touch('payments', before.id, 'updated');
  cmd.touch('journal_entries', entry.entryId);
  cmd.audit({ type: 'payment.reverted', subjectType: 'payment', subjectId: before.id, before, after });
}

/** The money module's revert handlers, by operation type (see src/operations/revertRegistry.ts). */
export const paymentRevertHandlers: Record<string, RevertHandler> = {
  'payment.create': revertPayment,
};
