import type { Command } from '../core/command.js';
import { AppError } from '../core/errors.js';
import { changeStock, touchStockMoves } from './changeStock.js';
import { assertSkusExist, assertStoreExists } from './receiveStock.js';

export interface AdjustmentInput {
  sku_id: string;
  quantity_change: number;
  reason: string;
}

/** A counted correction (damage, shrinkage, found stock). Never below zero. Not for piece-tracked SKUs (422). */
export async function adjustStock(cmd: Command, storeId: string, input: AdjustmentInput) {
  await assertStoreExists(cmd.tx, cmd.tenantId, storeId);
  const skus = await assertSkusExist(cmd.tx, cmd.tenantId, [input.sku_id], () => '/body/sku_id');
  // Stock of a piece-tracked SKU is the sum of its workshop pieces: it moves
  // only through pieces commands (receive, cut, combine, revert) and sales
  // naming pieces. Adjusting the balance alone would break that invariant.
  if (skus.get(input.sku_id)?.tracks_pieces) {
    throw new AppError('unprocessable', 'the stock of a piece-tracked SKU moves only through its pieces (POST /v1/pieces, sales naming piece_ids)', {
      errors: [{ path: '/body/sku_id', message: 'SKU is piece-tracked' }],
    });
  }
  const result = await changeStock(cmd.tx, cmd.tenantId, cmd.opId, [
    { storeId, skuId: input.sku_id, quantityChange: input.quantity_change, kind: 'adjustment', reason: input.reason },
  ]);
  if (!result.ok) {
    throw new AppError('insufficient_stock', 'the adjustment would make stock negative', {
      extra: { shortages: result.shortages.map(({ sku_id, requested, available }) => ({ sku_id, requested, available })) },
    });
  }
  const balance = result.balances[0];
  cmd.storeId = storeId;
  touchStockMoves(cmd, result.balances);
  // Before and after are the balance this adjustment found and left (the
  // statement that moved it returned the after; nothing else moved it between).
  cmd.audit({
    subjectType: 'stock',
    subjectId: `${storeId}/${input.sku_id}`,
    payload: input,
    before: balance ? { store_id: storeId, sku_id: input.sku_id, quantity: balance.quantity_after - input.quantity_change } : null,
    after: balance ? { store_id: balance.store_id, sku_id: balance.sku_id, quantity_after: balance.quantity_after, ledger_id: balance.ledger_id, quantity: balance.quantity_after } : null,
  });
  return { op_id: cmd.opId, sku_id: input.sku_id, quantity_change: input.quantity_change, quantity_after: balance?.quantity_after ?? 0, reason: input.reason };
}
