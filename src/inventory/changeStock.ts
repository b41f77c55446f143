import { sql } from 'kysely';
import { all, maybeOne, type Tx } from '../core/db.js';
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
  | { ok: true; balances: Array<{ store_id: string; sku_id: string; quantity_after: number; ledger_id: number; created?: boolean }> }
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
  const ordered = mergedInOrder(changes);

  const shortages: StockShortage[] = [];
  const after: Array<{ store_id: string; sku_id: string; quantity_after: number; ledger_id: number; created: boolean }> = [];
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
          -- xmax 0: the row was inserted by this statement, not updated (the store never held the SKU)
          RETURNING quantity, xmax = 0 AS created`
        : sql`
          UPDATE stock_balances SET quantity = quantity + ${change.quantityChange}, updated_at = now()
          WHERE tenant_id = ${tenantId} AND store_id = ${change.storeId} AND sku_id = ${change.skuId}
            AND quantity + ${change.quantityChange} >= 0
          RETURNING quantity, false AS created`;
    const row = await maybeOne(
      tx,
      sql<{ id: number; quantity_after: number; created: boolean }>`
        WITH changed AS (${balance}), ledger AS (
          INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
          SELECT ${tenantId}, ${change.storeId}, ${change.skuId}, ${opId}, ${change.quantityChange}, changed.quantity, ${change.kind}, ${change.reason ?? null}
          FROM changed
          RETURNING id, quantity_after
        )
        SELECT ledger.id, ledger.quantity_after, changed.created FROM ledger, changed`,
    );
    if (row) {
      after.push({ store_id: change.storeId, sku_id: change.skuId, quantity_after: row.quantity_after, ledger_id: row.id, created: row.created });
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

/** The changes summed per (store, sku, kind), those of 0 left out, in (store, sku) order. */
function mergedInOrder(changes: StockChange[]): StockChange[] {
  const merged = new Map<string, StockChange>();
  for (const change of changes) {
    assert(Number.isSafeInteger(change.quantityChange), 'stock changes are integers');
    const key = `${change.storeId}/${change.skuId}/${change.kind}`;
    const existing = merged.get(key);
    merged.set(key, existing ? { ...existing, quantityChange: existing.quantityChange + change.quantityChange } : { ...change });
  }
  return [...merged.values()]
    .filter((change) => change.quantityChange !== 0)
    .sort((a, b) => (a.storeId + a.skuId < b.storeId + b.skuId ? -1 : a.storeId + a.skuId > b.storeId + b.skuId ? 1 : 0));
}

/**
 * changeStock for balance rows the caller ALREADY HOLDS LOCKED, every one
 * (a stock count locks its SKUs' rows before it reads them): the same
 * relative, conditional change of each balance and its ledger row, but all
 * in ONE statement instead of one per line. Rows are not locked here in any
 * order — an UPDATE over many rows takes them as it finds them — so on rows
 * not held already this could deadlock: use changeStock there. One change
 * per (store, sku); every row must exist (it is held). A 1,000-line count
 * held its rows through 1,000 round trips, while the sales of those SKUs
 * waited (bench/countHold.ts). Shortages are reported as by changeStock, and
 * the caller MUST roll back on one.
 */
export async function changeHeldStock(tx: Tx, tenantId: string, opId: string, changes: StockChange[]): Promise<StockChangeResult> {
  const ordered = mergedInOrder(changes);
  const pairs = ordered.map((change) => `${change.storeId}/${change.skuId}`);
  assert(new Set(pairs).size === pairs.length, 'one change per balance row');
  if (ordered.length === 0) return { ok: true, balances: [] };
  const input = JSON.stringify(ordered.map((change) => ({ store_id: change.storeId, sku_id: change.skuId, change: change.quantityChange, kind: change.kind, reason: change.reason ?? null })));
  const moved = await all(
    tx,
    sql<{ id: number; store_id: string; sku_id: string; quantity_after: number }>`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${input}::jsonb) AS c(store_id uuid, sku_id uuid, change bigint, kind text, reason text)
      ), changed AS (
        UPDATE stock_balances b SET quantity = b.quantity + c.change, updated_at = now()
        FROM input c
        WHERE b.tenant_id = ${tenantId} AND b.store_id = c.store_id AND b.sku_id = c.sku_id AND b.quantity + c.change >= 0
        RETURNING b.store_id, b.sku_id, b.quantity, c.change, c.kind, c.reason
      )
      INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
      SELECT ${tenantId}, store_id, sku_id, ${opId}, change, quantity, kind, reason FROM changed ORDER BY store_id, sku_id
      RETURNING id, store_id, sku_id, quantity_after`,
  );
  const done = new Map(moved.map((row) => [`${row.store_id}/${row.sku_id}`, row]));
  const short = ordered.filter((change) => !done.has(`${change.storeId}/${change.skuId}`));
  if (short.length === 0) {
    return { ok: true, balances: ordered.map((change) => done.get(`${change.storeId}/${change.skuId}`)!).map(({ id, store_id, sku_id, quantity_after }) => ({ store_id, sku_id, quantity_after, ledger_id: id })) };
  }
  assert(short.every((change) => change.quantityChange < 0), 'adding stock to a held row always succeeds');
  // Read what is there for the report; the caller rolls back.
  const current = await all(
    tx,
    sql<{ store_id: string; sku_id: string; quantity: number }>`
      SELECT b.store_id, b.sku_id, b.quantity FROM stock_balances b
      JOIN jsonb_to_recordset(${JSON.stringify(short.map((change) => ({ store_id: change.storeId, sku_id: change.skuId })))}::jsonb) AS c(store_id uuid, sku_id uuid)
        ON b.store_id = c.store_id AND b.sku_id = c.sku_id
      WHERE b.tenant_id = ${tenantId}`,
  );
  const available = new Map(current.map((row) => [`${row.store_id}/${row.sku_id}`, row.quantity]));
  return {
    ok: false,
    shortages: short.map((change) => ({ store_id: change.storeId, sku_id: change.skuId, requested: -change.quantityChange, available: available.get(`${change.storeId}/${change.skuId}`) ?? 0 })),
  };
}

/**
 * Creates the balance rows of these (store, sku) pairs that do not exist yet
 * (at 0) and locks every one of them, row by row in (store, sku) order — the
 * order changeStock, the sales and the counts lock in — in ONE statement:
 * `ON CONFLICT DO UPDATE … WHERE false` locks an existing row (FOR NO KEY
 * UPDATE, without writing it) and waits for a row another transaction is
 * inserting. Returns the pairs it created (RETURNING names only those). The
 * rows are then the caller's until commit, for changeHeldStock. A command
 * that made its new rows first and locked the existing ones after would hold
 * a higher row before a lower one, and deadlock with a writer holding the
 * lower one and waiting for the higher (stockCountRowCreation.int.spec.ts).
 */
export async function holdBalanceRows(tx: Tx, tenantId: string, pairs: ReadonlyArray<{ storeId: string; skuId: string }>): Promise<Array<{ store_id: string; sku_id: string }>> {
  // One input row per pair: a statement may not lock a row it inserted.
  const unique = [...new Map(pairs.map((pair) => [`${pair.storeId.toLowerCase()}/${pair.skuId.toLowerCase()}`, pair])).values()];
  if (unique.length === 0) return [];
  return all(
    tx,
    sql<{ store_id: string; sku_id: string }>`
      INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity)
      SELECT ${tenantId}, p.store_id, p.sku_id, 0
      FROM unnest(${unique.map((pair) => pair.storeId)}::uuid[], ${unique.map((pair) => pair.skuId)}::uuid[]) AS p(store_id, sku_id)
      ORDER BY p.store_id, p.sku_id
      ON CONFLICT (tenant_id, store_id, sku_id) DO UPDATE SET quantity = stock_balances.quantity WHERE false
      RETURNING store_id, sku_id`,
  );
}

/**
 * changeStock for a command that only ADDS stock, one kind per balance row
 * (a receipt or purchase, a transfer received): its rows are created or
 * locked in one (store, sku)-ordered statement (holdBalanceRows), then moved
 * with their ledger rows in one more (changeHeldStock) — two statements
 * whatever the line count, where changeStock makes one round trip per line
 * and holds the first rows through all of them while the tills selling those
 * SKUs wait (a 1,000-line receipt held its first rows 0.5-2.9 s, past the 2 s
 * a sale waits: bench/countHold.ts). Lines of one pair are summed first, as
 * by changeStock; the balances, ledger rows (ids ascending in (store, sku)
 * order) and answer are the same as changeStock's. Adding cannot fall short.
 * `created`: the balance rows it made (the store never held the SKU), for
 * touchStockMoves to name as created.
 */
export async function addStock(
  tx: Tx,
  tenantId: string,
  opId: string,
  changes: StockChange[],
): Promise<StockChangeResult & { ok: true; created: Array<{ store_id: string; sku_id: string }> }> {
  const ordered = mergedInOrder(changes);
  assert(ordered.every((change) => change.quantityChange > 0), 'addStock only adds stock');
  const created = await holdBalanceRows(tx, tenantId, ordered);
  const result = await changeHeldStock(tx, tenantId, opId, ordered);
  assert(result.ok, 'adding stock to a held row always succeeds');
  return { ...result, created };
}

/**
 * Names what a stock move touched in the command's effects (GET
 * /v1/operations/{op_id}): each new ledger row by its id, each balance by
 * `store/sku` — as sales and voids do —, `updated`, or `created` for one of
 * `created` (the balance rows the command made: holdBalanceRows, addStock),
 * named once.
 */
export function touchStockMoves(
  cmd: Pick<Command, 'touch'>,
  balances: ReadonlyArray<{ store_id: string; sku_id: string; ledger_id: number; created?: boolean }>,
  created: ReadonlyArray<{ store_id: string; sku_id: string }> = [],
): void {
  const made = new Set(created.map((row) => `${row.store_id}/${row.sku_id}`.toLowerCase()));
  for (const balance of balances) {
    const pair = `${balance.store_id}/${balance.sku_id}`;
    cmd.touch('stock_ledger', String(balance.ledger_id), 'created');
    cmd.touch('stock_balances', pair, balance.created === true || made.has(pair.toLowerCase()) ? 'created' : 'updated');
  }
}

/**
 * After a void or a return put goods back (changeStock, +q rows, their
 * balance rows now held by this transaction): of those a till made offline
 * at or before its balance's latest count (`tillTime` ≤ counted_through, read
 * under the lock), takes them out again through a `count_correction` row of
 * −q (reason `count <counted_by>`), written after the +q row so no
 * quantity_after goes below 0: the count already found the goods on the
 * shelf, and the operation moves the balance by 0 — the mirror of a synced
 * sale the count covers (planSale). A void or return without the till's
 * time is "now" (none is corrected): call only with one, and with the
 * changes changeStock just applied. One statement for all the rows (the
 * quantity never goes below 0: the +q is in); returns the corrections written.
 */
export async function correctCountedGiveBacks(
  tx: Tx,
  tenantId: string,
  opId: string,
  tillTime: string,
  changes: StockChange[],
): Promise<Array<{ store_id: string; sku_id: string; quantity_after: number; ledger_id: number }>> {
  const given = mergedInOrder(changes);
  assert(given.every((change) => change.quantityChange > 0), 'only goods given back are corrected');
  if (given.length === 0) return [];
  const input = JSON.stringify(given.map((change) => ({ store_id: change.storeId, sku_id: change.skuId, change: change.quantityChange })));
  const rows = await all(
    tx,
    sql<{ id: number; store_id: string; sku_id: string; quantity_after: number }>`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${input}::jsonb) AS c(store_id uuid, sku_id uuid, change bigint)
      ), changed AS (
        UPDATE stock_balances b SET quantity = b.quantity - c.change, updated_at = now()
        FROM input c
        WHERE b.tenant_id = ${tenantId} AND b.store_id = c.store_id AND b.sku_id = c.sku_id
          AND b.counted_through >= ${tillTime}::timestamptz
        RETURNING b.store_id, b.sku_id, b.quantity, c.change, b.counted_by
      )
      INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
      SELECT ${tenantId}, store_id, sku_id, ${opId}, -change, quantity, 'count_correction', 'count ' || counted_by FROM changed ORDER BY store_id, sku_id
      RETURNING id, store_id, sku_id, quantity_after`,
  );
  return rows.map(({ id, store_id, sku_id, quantity_after }) => ({ store_id, sku_id, quantity_after, ledger_id: id }));
}
