import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, type Tx } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { changeStock, type StockChange, touchStockMoves } from './changeStock.js';

/**
 * Refuses SKU ids the tenant does not have (reported like a bad field): each
 * line naming one at its own path, `pathOf(index)` (by default
 * `/body/items/<index>/sku_id`, as a sale reports them).
 */
export async function assertSkusExist(
  tx: Tx,
  tenantId: string,
  skuIds: string[],
  pathOf: (index: number) => string = (index) => `/body/items/${index}/sku_id`,
): Promise<Map<string, { id: string; unit: string; price: number; tracks_pieces: boolean }>> {
  const unique = [...new Set(skuIds)];
  const rows = await all(
    tx,
    sql<{ id: string; unit: string; price: number; tracks_pieces: boolean }>`
      SELECT id, unit, price, tracks_pieces FROM skus WHERE tenant_id = ${tenantId} AND id = ANY(${unique}::uuid[])`,
  );
  const found = new Map(rows.map((row) => [row.id, row]));
  const missing = unique.filter((id) => !found.has(id));
  if (missing.length > 0) {
    throw new AppError('validation_failed', `unknown SKU ids: ${missing.join(', ')}`, {
      errors: skuIds.flatMap((id, index) => (found.has(id) ? [] : [{ path: pathOf(index), message: `SKU ${id} does not exist` }])),
    });
  }
  return found;
}

export async function assertStoreExists(tx: Tx, tenantId: string, storeId: string): Promise<void> {
  const rows = await all(tx, sql<{ id: string }>`SELECT id FROM stores WHERE tenant_id = ${tenantId} AND id = ${storeId}`);
  if (rows.length === 0) throw new AppError('not_found', 'store was not found');
}

export interface ReceiptInput {
  items: Array<{ sku_id: string; quantity: number }>;
  reference?: string | undefined;
}

export async function receiveStock(cmd: Command, storeId: string, input: ReceiptInput) {
  await assertStoreExists(cmd.tx, cmd.tenantId, storeId);
  const skus = await assertSkusExist(cmd.tx, cmd.tenantId, input.items.map((item) => item.sku_id));
  // Stock of a piece-tracked SKU is the sum of its workshop pieces: it is
  // received as pieces (POST /v1/pieces), never as a bare quantity.
  const pieceTracked = input.items.flatMap((item, index) => (skus.get(item.sku_id)?.tracks_pieces ? [index] : []));
  if (pieceTracked.length > 0) {
    throw new AppError('unprocessable', 'piece-tracked SKUs are received as pieces (POST /v1/pieces)', {
      errors: pieceTracked.map((index) => ({ path: `/body/items/${index}/sku_id`, message: 'SKU is piece-tracked' })),
    });
  }
  const changes: StockChange[] = input.items.map((item) => ({
    storeId,
    skuId: item.sku_id,
    quantityChange: item.quantity,
    kind: 'receipt',
    reason: input.reference ?? null,
  }));
  const result = await changeStock(cmd.tx, cmd.tenantId, cmd.opId, changes);
  if (!result.ok) throw new Error('a receipt only adds stock'); // unreachable: quantities are positive
  cmd.storeId = storeId;
  touchStockMoves(cmd, result.balances);
  cmd.audit({ subjectType: 'store', subjectId: storeId, payload: input, after: result.balances });
  return { op_id: cmd.opId, items: result.balances.map(({ sku_id, quantity_after }) => ({ sku_id, quantity_after })) };
}
