import type { ExpectedVersions } from '../core/expectedVersions.js';
import { sql } from 'kysely';
import type { TenantPrincipal } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { all } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { changeStock, touchStockMoves } from '../inventory/changeStock.js';
import { assertSecondApprover } from '../tenancy/secondApprover.js';
import { findTransfer, lockTransfer } from './queries.js';
import { assertTransferAction } from './transferScope.js';
import { answerIfAlreadyDone, STAMP, transitionTransfer } from './transitionTransfer.js';
import type { TransferRow } from './transfers.table.js';

/**
 * Approve: status → approved, the stock leaves the source (ledger `transfer_out`)
 * and is recorded in transit on the items — one transaction. Short stock at the
 * source refuses the whole approval (`409 insufficient_stock`, nothing written).
 * Only a token whose scope includes the SOURCE store may approve (and, with
 * the tenant's require_second_approver on, not the token that requested it).
 * An approval repeated on a transfer approved already (received since, too)
 * is answered with that approval (answerIfAlreadyDone).
 */
export async function approveTransfer(cmd: Command, principal: TenantPrincipal, id: string, expectedVersion?: ExpectedVersions): Promise<TransferRow> {
  const current = await lockTransfer(cmd.tx, cmd.tenantId, id);
  assertTransferAction(principal, current, 'source');
  cmd.storeId = current.source_store_id;
  await assertSecondApprover(cmd, current.op_id, 'the transfer');
  // Approved already (and maybe received since): the approval's own answer, nothing written.
  await answerIfAlreadyDone(cmd, current, 'approve', expectedVersion);
  await transitionTransfer(cmd, current, 'approve', sql`approved_by = ${cmd.actor}, approved_op = ${cmd.opId}, approved_at = ${STAMP}`, expectedVersion);
  const stock = await changeStock(
    cmd.tx,
    cmd.tenantId,
    cmd.opId,
    current.items.map((item) => ({
      storeId: current.source_store_id,
      skuId: item.sku_id,
      quantityChange: -item.quantity,
      kind: 'transfer_out',
      reason: `transfer ${id}`,
    })),
  );
  if (!stock.ok) {
    throw new AppError('insufficient_stock', 'the source store does not have the stock to send', {
      extra: { shortages: stock.shortages.map(({ sku_id, requested, available }) => ({ sku_id, requested, available })) },
    });
  }
  const itemRows = await all(
    cmd.tx,
    sql<{ id: string }>`UPDATE stock_transfer_items SET quantity_in_transit = quantity WHERE tenant_id = ${cmd.tenantId} AND transfer_id = ${id} RETURNING id`,
  );
  const after = await findTransfer(cmd.tx, cmd.tenantId, id);
  if (!after) throw new Error('approved transfer is missing');
  cmd.touch('stock_transfers', id, 'updated');
  for (const line of itemRows) cmd.touch('stock_transfer_items', line.id, 'updated');
  touchStockMoves(cmd, stock.balances);
  cmd.audit({ subjectType: 'stock_transfer', subjectId: id, before: current, after });
  return after;
}
