import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne, type Tx } from '../core/db.js';
import { notFound } from '../core/errors.js';
import { findSku } from './queries.js';
import { assertStoreExists } from './receiveStock.js';

export interface ReorderLevelView {
  store_id: string;
  sku_id: string;
  /** Base units of the SKU; null: no level. */
  reorder_level: number | null;
}

/** The pair's level row, locked until the transaction ends (none: never given a level). */
async function lockReorderLevelForUpdate(tx: Tx, tenantId: string, storeId: string, skuId: string): Promise<{ quantity: number | null } | undefined> {
  return maybeOne(
    tx,
    sql<{ quantity: number | null }>`
      SELECT quantity FROM stock_reorder_levels
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ${skuId}
      FOR UPDATE`,
  );
}

/**
 * Sets (or, with null, removes) a store's reorder level of a SKU. The level
 * row is the lock: it is locked and read before it is written, so
 * concurrent changes of one pair take turns and each audit event's `before`
 * is the level the previous change left. A pair without a row gets one
 * (ON CONFLICT DO NOTHING: of two first changes, the second then locks the
 * row the first made). A removed level stays as a row with a null quantity,
 * the next change's lock. The same level again changes nothing (answered
 * as it is, no event).
 */
export async function setReorderLevel(cmd: Command, storeId: string, skuId: string, quantity: number | null): Promise<ReorderLevelView> {
  await assertStoreExists(cmd.tx, cmd.tenantId, storeId);
  if (!(await findSku(cmd.tx, cmd.tenantId, skuId))) throw notFound('SKU');
  cmd.storeId = storeId;
  const view = (level: number | null): ReorderLevelView => ({ store_id: storeId, sku_id: skuId, reorder_level: level });
  let row = await lockReorderLevelForUpdate(cmd.tx, cmd.tenantId, storeId, skuId);
  let created = false;
  if (row === undefined) {
    if (quantity === null) return view(null);
    const inserted = await maybeOne(
      cmd.tx,
      sql<{ quantity: number }>`
        INSERT INTO stock_reorder_levels (tenant_id, store_id, sku_id, quantity, op_id, changed_by_op)
        VALUES (${cmd.tenantId}, ${storeId}, ${skuId}, ${quantity}, ${cmd.opId}, ${cmd.opId})
        ON CONFLICT (tenant_id, store_id, sku_id) DO NOTHING
        RETURNING quantity`,
    );
    if (inserted !== undefined) {
      created = true;
      row = { quantity: null };
    } else {
      // Another first change committed the row meanwhile: this one applies to what it left.
      row = await lockReorderLevelForUpdate(cmd.tx, cmd.tenantId, storeId, skuId);
    }
  }
  const before = row === undefined || row.quantity === null ? null : Number(row.quantity);
  if (!created) {
    if (before === quantity) return view(before);
    await sql`
      UPDATE stock_reorder_levels SET quantity = ${quantity}, changed_by_op = ${cmd.opId}, updated_at = now()
      WHERE tenant_id = ${cmd.tenantId} AND store_id = ${storeId} AND sku_id = ${skuId}`.execute(cmd.tx);
  }
  cmd.touch('stock_reorder_levels', `${storeId}/${skuId}`, created ? 'created' : 'updated');
  cmd.audit({
    subjectType: 'reorder_level',
    subjectId: `${storeId}/${skuId}`,
    before: created ? null : view(before),
    after: view(quantity),
  });
  return view(quantity);
}
