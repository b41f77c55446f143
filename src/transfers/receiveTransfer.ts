import type { ExpectedVersions } from '../core/expectedVersions.js';
import { sql } from 'kysely';
import type { TenantPrincipal } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { all } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { openReviewItem } from '../core/review.js';
import { addStock, touchStockMoves } from '../inventory/changeStock.js';
import { findTransfer, lockTransfer } from './queries.js';
import { assertTransferAction } from './transferScope.js';
import { planReceipt, type ReceiptLine } from './transferState.js';
import { answerIfAlreadyDone, STAMP, transitionTransfer } from './transitionTransfer.js';
import type { TransferRow } from './transfers.table.js';

/**
 * Receive: status → received, what arrived enters the destination (ledger
 * `transfer_in`), the transit is cleared, and a shortfall (sent − received)
 * opens a `transfer_shortfall` review item — one transaction. The shortfall
 * is not put back at the source: it left and did not arrive; a person decides.
 * Only a token whose scope includes the DESTINATION store may receive.
 * A receipt repeated on the received transfer with the same quantities is
 * answered with that receipt; with other quantities it is 409
 * invalid_transition, nothing recorded.
 */
export async function receiveTransfer(cmd: Command, principal: TenantPrincipal, id: string, lines: ReceiptLine[] | undefined, expectedVersion?: ExpectedVersions): Promise<TransferRow> {
  const current = await lockTransfer(cmd.tx, cmd.tenantId, id);
  assertTransferAction(principal, current, 'destination');
  cmd.storeId = current.destination_store_id;
  // Received already: the same quantities (however listed: no lines for
  // "everything arrived", any order) are that receipt, answered as done;
  // other quantities were not recorded, and are refused (409).
  await answerIfAlreadyDone(cmd, current, 'receive', expectedVersion, (received) => sameReceipt(received, lines));
  // The transition first: a transfer that cannot be received (cancelled,
  // received already, stale If-Match) is 409 / 412 whatever lines were sent.
  // A bad line then throws and rolls the transition back with the command.
  await transitionTransfer(cmd, current, 'receive', sql`received_by = ${cmd.actor}, received_op = ${cmd.opId}, received_at = ${STAMP}`, expectedVersion);
  const plan = planReceipt(current.items, lines);
  if (!plan.ok) throw new AppError('validation_failed', plan.errors.map((e) => `${e.path} ${e.message}`).join('; '), { errors: plan.errors });
  // Only adds stock: the destination's rows created or locked in one
  // sku_id-ordered statement and moved in one more (addStock).
  const stock = await addStock(
    cmd.tx,
    cmd.tenantId,
    cmd.opId,
    plan.lines
      .filter((line) => line.received > 0)
      .map((line) => ({ storeId: current.destination_store_id, skuId: line.sku_id, quantityChange: line.received, kind: 'transfer_in', reason: `transfer ${id}` })),
  );
  const itemRows = await all(
    cmd.tx,
    sql<{ id: string }>`
      UPDATE stock_transfer_items i SET quantity_in_transit = 0, quantity_received = l.received
      FROM jsonb_to_recordset(${JSON.stringify(plan.lines)}::jsonb) AS l(sku_id uuid, received bigint)
      WHERE i.tenant_id = ${cmd.tenantId} AND i.transfer_id = ${id} AND i.sku_id = l.sku_id
      RETURNING i.id`,
  );
  const short = plan.lines.filter((line) => line.shortfall > 0);
  if (short.length > 0) {
    const reviewId = await openReviewItem(cmd.tx, cmd.tenantId, cmd.opId, {
      kind: 'transfer_shortfall',
      severity: 'warning',
      subjectType: 'stock_transfer',
      subjectId: id,
      storeId: current.destination_store_id,
      // the source's too: its goods left and did not arrive
      otherStoreId: current.source_store_id,
      detail: { transfer_id: id, source_store_id: current.source_store_id, lines: short },
      dedupeKey: `transfer_shortfall/${id}`,
    });
    cmd.touch('review_items', reviewId);
  }
  const after = await findTransfer(cmd.tx, cmd.tenantId, id);
  if (!after) throw new Error('received transfer is missing');
  cmd.touch('stock_transfers', id, 'updated');
  for (const line of itemRows) cmd.touch('stock_transfer_items', line.id, 'updated');
  touchStockMoves(cmd, stock.balances, stock.created);
  cmd.audit({ subjectType: 'stock_transfer', subjectId: id, before: current, after });
  return after;
}

/** Whether these lines, planned against what was sent, are what the transfer recorded as received. */
export function sameReceipt(transfer: TransferRow, lines: ReceiptLine[] | undefined): boolean {
  const plan = planReceipt(transfer.items, lines);
  if (!plan.ok) return false;
  const recorded = new Map(transfer.items.map((item) => [item.sku_id, item.quantity_received]));
  return plan.lines.every((line) => recorded.get(line.sku_id) === line.received);
}
