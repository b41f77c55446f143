import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one, readClientMoment } from '../core/db.js';
import { AppError, assert } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import { postJournal } from './postJournal.js';
import { findParty } from './queries.js';
import { storeAccountForMethod, type PaymentMethod, type PaymentRow } from './money.table.js';

export interface PaymentInput {
  party_id: string;
  store_id: string;
  method: PaymentMethod;
  amount: number;
  /** Default: `out` for a supplier (we pay), `in` for a customer (they pay). */
  direction?: 'in' | 'out' | undefined;
  reference?: string | undefined;
  /**
   * When the till made the payment, for one it queued offline: its money is
   * booked on that day, as a synced sale's (postJournal's tillTime).
   */
  client_created_at?: string | undefined;
}

/**
 * A payment and its journal entry, in the command's one transaction:
 *   in  (a customer pays):  debit the store's drawer/bank/clearing, credit the party
 *   out (we pay a supplier): debit the party, credit the store's drawer/bank/clearing
 */
export async function createPayment(cmd: Command, input: PaymentInput): Promise<PaymentRow> {
  // As PostgreSQL reads it (UTC, microseconds), before anything is written.
  const clientCreatedAt =
    input.client_created_at === undefined ? null : await readClientMoment(cmd.tx, input.client_created_at, { name: 'client_created_at', path: '/body/client_created_at' });
  await assertStoreExists(cmd.tx, cmd.tenantId, input.store_id);
  const party = await findParty(cmd.tx, cmd.tenantId, input.party_id);
  if (!party) {
    throw new AppError('validation_failed', `party ${input.party_id} does not exist`, {
      errors: [{ path: '/body/party_id', message: 'is not a known supplier or customer' }],
    });
  }
  const direction = input.direction ?? (party.kind === 'supplier' ? 'out' : 'in');
  const storeAccount = storeAccountForMethod(input.method);
  assert(storeAccount !== null, 'every payment method has a store account');
  const intoStore = direction === 'in' ? input.amount : -input.amount;
  const id = newId();
  const entry = await postJournal(cmd.tx, cmd, {
    kind: 'payment',
    storeId: input.store_id,
    subjectType: 'payment',
    subjectId: id,
    tillTime: clientCreatedAt,
    postings: [
      { account: { storeId: input.store_id, kind: storeAccount }, amount: intoStore },
      { account: { partyId: party.id }, amount: -intoStore },
    ],
  });
  const row = await one(
    cmd.tx,
    sql<Omit<PaymentRow, 'business_date'>>`
      INSERT INTO payments (tenant_id, id, party_id, store_id, direction, method, amount, reference, client_created_at, entry_id, op_id)
      VALUES (${cmd.tenantId}, ${id}, ${party.id}, ${input.store_id}, ${direction}, ${input.method}, ${input.amount},
              ${input.reference ?? null}, ${clientCreatedAt}, ${entry.entryId}, ${cmd.opId})
      RETURNING id, party_id, store_id, direction, method, amount, reference, client_created_at, entry_id, op_id, created_at`,
  );
  const payment: PaymentRow = { ...row, business_date: entry.businessDate };
  cmd.storeId = input.store_id;
  cmd.touch('payments', id);
  cmd.touch('journal_entries', entry.entryId);
  cmd.audit({ subjectType: 'payment', subjectId: id, after: payment });
  return payment;
}
