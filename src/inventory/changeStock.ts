import { sql } from 'kysely';
import { maybeOne, type Tx } from '../core/db.js';
import { assert } from '../core/errors.js';
import type { Command } from '../core/command.js';

export interface StockChange {
  storeId: string;
  skuId: string;
  /** Base units; negative takes stock out. */
  quantityChange: number;
  kind: string;
  reason?: string | null;
}

export interface StockShortage {
  store_id: string;
  sku_id: string;
  requested: number;
  available: number;
}

export type StockChangeResult =
  | { ok: true; balances: Array<{ store_id: string; sku_id: string; quantity_after: number; ledger_id: number }> }
  | { ok: false; shortages: StockShortage[] };

/**
 * Moves stock and appends the ledger, in the caller's transaction.
 *
 * Each balance is changed with ONE relative, conditional statement —
 * `quantity = quantity + change WHERE quantity + change >= 0` — which takes the
 * row lock and checks in the same step, so two cashiers selling the last kilo
 * can never both succeed (the second waits for the lock, then sees the new
 * quantity). Changes are applied in (store, sku) order so two multi-line
 * commands cannot deadlock; lines of the same SKU are summed first.
 *
 * A shortage is a result, not an exception: every short line is reported, and
 * the caller MUST roll back (lines before the short one have already moved and
 * written their ledger rows in this transaction).
 */
export async function changeStock(tx: Tx, tenantId: string, opId: string, changes: StockChange[]): Promise<StockChangeResult> {
  const merged = new Map<string, StockChange>();
  for (const change of changes) {
    assert(Number.isSafeInteger(change.quantityChange), 'stock changes are integers');
    const key = `${change.storeId}/${change.skuId}/${change.kind}`;
    const existing = merged.get(key);
    merged.set(key, existing ? { ...existing, quantityChange: existing.quantityChange + change.quantityChange } : { ...change });
  }
  const ordered = [...merged.values()]
    .filter((change) => change.quantityChange !== 0)
    .sort((a, b) => (a.storeId + a.skuId < b.storeId + b.skuId ? -1 : a.storeId + a.skuId > b.storeId + b.skuId ? 1 : 0));

  const shortages: StockShortage[] = [];
  const after: Array<{ store_id: string; sku_id: string; quantity_after: number; ledger_id: number }> = [];
  for (const change of ordered) {
    // The balance change and its ledger row are ONE statement (a data-modifying
    // CTE): one round trip per line, and the ledger row exists exactly when the
    // balance moved. The sale path runs this for every line of every sale, so
    // round trips are what bounds throughput on a hot SKU.
    const balance =
      change.quantityChange > 0
        ? sql`
          INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity)
          VALUES (${tenantId}, ${change.storeId}, ${change.skuId}, ${change.quantityChange})
          ON CONFLICT (tenant_id, store_id, sku_id)
          DO UPDATE SET quantity = stock_balances.quantity + EXCLUDED.quantity, updated_at = now()
          RETURNING quantity`
        : sql`
          UPDATE stock_balances SET quantity = quantity + ${change.quantityChange}, updated_at = now()
          WHERE tenant_id = ${tenantId} AND store_id = ${change.storeId} AND sku_id = ${change.skuId}
            AND quantity + ${change.quantityChange} >= 0
          RETURNING quantity`;
    const row = await maybeOne(
      tx,
      sql<{ id: number; quantity_after: number }>`
        WITH changed AS (${balance})
        INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
        SELECT ${tenantId}, ${change.storeId}, ${change.skuId}, ${opId}, ${change.quantityChange}, changed.quantity, ${change.kind}, ${change.reason ?? null}
        FROM changed
        RETURNING id, quantity_after`,
    );
    if (row) {
      after.push({ store_id: change.storeId, sku_id: change.skuId, quantity_after: row.quantity_after, ledger_id: row.id });
    } else {
      assert(change.quantityChange < 0, 'adding stock always succeeds');
      // Short (or no balance row yet). Read what is there for the report; the
      // caller rolls back, so this read does not need to be stable.
      const current = await maybeOne(
        tx,
        sql<{ quantity: number }>`
          SELECT quantity FROM stock_balances
          WHERE tenant_id = ${tenantId} AND store_id = ${change.storeId} AND sku_id = ${change.skuId}`,
      );
      shortages.push({ store_id: change.storeId, sku_id: change.skuId, requested: -change.quantityChange, available: current?.quantity ?? 0 });
    }
  }
  if (shortages.length > 0) return { ok: false, shortages };
  return { ok: true, balances: after };
}

/**
 * Names what a stock move touched in the command's effects (GET
 * /v1/operations/{op_id}): each new ledger row by its id, each balance by
 * `store/sku` — as sales and voids do.
 */
export function touchStockMoves(cmd: Pick<Command, 'touch'>, balances: ReadonlyArray<{ store_id: string; sku_id: string; ledger_id: number }>): void {
  for (const balance of balances) {
    cmd.touch('stock_ledger', String(balance.ledger_id), 'created');
    cmd.touch('stock_balances', `${balance.store_id}/${balance.sku_id}`, 'updated');
  }
}
