import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, type Tx } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { purchaseLines, purchaseShape, type PurchaseLine, type ReceiptLineInput } from '../money/purchasePlan.js';
import type { Unit } from './inventory.table.js';
import { assertSupplier, recordPurchase, type PurchaseView } from '../money/recordPurchase.js';
import { addStock, type StockChange, touchStockMoves } from './changeStock.js';

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
  items: ReceiptLineInput[];
  reference?: string | undefined;
  /** A supplier (party of kind supplier): with a unit_cost on every line, the receipt is a purchase. */
  supplier_id?: string | undefined;
}

export interface ReceiptAnswer {
  op_id: string;
  items: Array<{ sku_id: string; quantity_after: number }>;
  /** Only for a purchase (supplier_id and costs): a plain receipt's answer is as it always was. */
  purchase?: PurchaseView;
}

/**
 * Goods received into a store; with `supplier_id` and a `unit_cost` on every
 * line, a purchase too: the same transaction records what we owe the supplier
 * (src/money/recordPurchase.ts). Everything is checked before anything is
 * written.
 */
export async function receiveStock(cmd: Command, storeId: string, input: ReceiptInput): Promise<ReceiptAnswer> {
  const shape = purchaseShape(input);
  if (!shape.ok) throw new AppError('validation_failed', 'a receipt names a supplier and a unit_cost on every line, or neither', { errors: shape.errors });
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
  let purchase: { supplierId: string; lines: PurchaseLine[]; total: number } | null = null;
  if (shape.purchase) {
    await assertSupplier(cmd.tx, cmd.tenantId, input.supplier_id!);
    const planned = purchaseLines(input.items.map((item) => ({ sku_id: item.sku_id, quantity: item.quantity, unit_cost: item.unit_cost!, unit: skus.get(item.sku_id)!.unit as Unit })));
    if (!planned.ok) throw new AppError('validation_failed', 'a purchase line or total is above the largest amount', { errors: planned.errors });
    purchase = { supplierId: input.supplier_id!, lines: planned.lines, total: planned.total };
  }
  const changes: StockChange[] = input.items.map((item) => ({
    storeId,
    skuId: item.sku_id,
    quantityChange: item.quantity,
    kind: 'receipt',
    reason: input.reference ?? null,
  }));
  // Every balance row created or locked in one sku_id-ordered statement, then
  // moved with its ledger row in one more: not one round trip per line while
  // the tills selling these SKUs wait for the first rows (bench/countHold.ts).
  const result = await addStock(cmd.tx, cmd.tenantId, cmd.opId, changes);
  cmd.storeId = storeId;
  touchStockMoves(cmd, result.balances, result.created);
  const answer: ReceiptAnswer = { op_id: cmd.opId, items: result.balances.map(({ sku_id, quantity_after }) => ({ sku_id, quantity_after })) };
  if (purchase) {
    answer.purchase = await recordPurchase(cmd, { storeId, reference: input.reference ?? null, ...purchase });
    cmd.audit({ subjectType: 'purchase', subjectId: answer.purchase.id, after: answer.purchase });
  }
  cmd.audit({ subjectType: 'store', subjectId: storeId, payload: input, after: result.balances });
  return answer;
}
