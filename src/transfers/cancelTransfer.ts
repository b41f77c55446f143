import type { ExpectedVersions } from '../core/expectedVersions.js';
import { sql } from 'kysely';
import { inStoreScope, type TenantPrincipal } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { notFound } from '../core/errors.js';
import { findTransfer, lockTransfer } from './queries.js';
import { answerIfAlreadyDone, STAMP, transitionTransfer } from './transitionTransfer.js';
import type { TransferRow } from './transfers.table.js';

/**
 * Cancel: only a requested transfer (nothing has moved yet); either end's
 * staff may cancel. A cancel repeated on the cancelled transfer is answered
 * with that cancel (answerIfAlreadyDone).
 */
export async function cancelTransfer(cmd: Command, principal: TenantPrincipal, id: string, expectedVersion?: ExpectedVersions): Promise<TransferRow> {
  const current = await lockTransfer(cmd.tx, cmd.tenantId, id);
  if (!current || (!inStoreScope(principal, current.source_store_id) && !inStoreScope(principal, current.destination_store_id))) {
    throw notFound('transfer');
  }
  cmd.storeId = current.source_store_id;
  await answerIfAlreadyDone(cmd, current, 'cancel', expectedVersion);
  await transitionTransfer(cmd, current, 'cancel', sql`cancelled_by = ${cmd.actor}, cancelled_op = ${cmd.opId}, cancelled_at = ${STAMP}`, expectedVersion);
  const after = await findTransfer(cmd.tx, cmd.tenantId, id);
  if (!after) throw new Error('cancelled transfer is missing');
  cmd.touch('stock_transfers', id, 'updated');
  cmd.audit({ subjectType: 'stock_transfer', subjectId: id, before: current, after });
  return after;
}
