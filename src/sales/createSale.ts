import { sql } from 'kysely';
import type { Command, CommandFn } from '../core/command.js';
import { all, one, type Tx } from '../core/db.js';
import { AppError, assert } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { roleHas } from '../core/permissions.js';
import { openReviewItem } from '../core/review.js';
import { changeStock, type StockChange } from '../inventory/changeStock.js';
import { assertSaleCustomer, postSale } from '../money/postSale.js';
import type { Unit } from '../inventory/inventory.table.js';
import { lockPiecesForSale, markPiecesSold, pieceUnavailable, type PieceSaleLineResult, type UnavailablePiece } from '../pieces/sellPieces.js';
import type { PieceRow } from '../pieces/pieces.table.js';
import { lineTotal } from './lineTotal.js';
import type { SaleInput, SaleItemView, SaleSource, SaleView } from './sale.table.js';

export interface SaleShortage {
  sku_id: string;
  requested: number;
  available: number;
}

export type RecordSaleResult =
  | { ok: true; sale: SaleView }
  | { ok: false; shortages: SaleShortage[] }
  | { ok: false; unavailable: UnavailablePiece[] };

interface CatalogSku {
  id: string;
  unit: Unit;
  tracks_pieces: boolean;
}

interface SaleCatalog {
  store_exists: boolean;
  skus: CatalogSku[];
}

/** A sale line with its quantity known (for a piece line: the sum of its pieces). */
interface QuantifiedLine {
  sku_id: string;
  quantity: number;
}

/** Quantity per SKU with lines of the same SKU summed, in first-seen order. */
export function quantitiesBySku(items: readonly QuantifiedLine[]): Map<string, number> {
  const totals = new Map<string, number>();
  for (const item of items) totals.set(item.sku_id, (totals.get(item.sku_id) ?? 0) + item.quantity);
  return totals;
}

/**
 * Spreads each SKU's unfulfilled quantity over its lines, last line first
 * (earlier lines are filled first). Returns the shortfall per line.
 */
export function allocateShortfall(items: readonly QuantifiedLine[], shortfallBySku: Map<string, number>): number[] {
  const remaining = new Map(shortfallBySku);
  const result = items.map(() => 0);
  for (let index = items.length - 1; index >= 0; index--) {
    const item = items[index]!;
    const left = remaining.get(item.sku_id) ?? 0;
    const take = Math.min(left, item.quantity);
    result[index] = take;
    remaining.set(item.sku_id, left - take);
  }
  return result;
}

// Stores and SKUs are never deleted and a SKU's unit and tracks_pieces never
// change (all enforced in the database), so once seen they are cached for the process:
// a sale on known stores and SKUs reads nothing before moving stock. One
// round trip less per sale matters under group commit, where a batch runs
// its sales one after another.
const knownStores = new Set<string>();
const knownSkus = new Map<string, CatalogSku>();
const CACHE_LIMIT = 100_000;

async function loadSaleCatalog(tx: Tx, tenantId: string, storeId: string, skuIds: string[]): Promise<SaleCatalog> {
  const cached = skuIds.map((id) => knownSkus.get(`${tenantId}/${id}`));
  if (knownStores.has(`${tenantId}/${storeId}`) && cached.every((sku) => sku !== undefined)) {
    return { store_exists: true, skus: cached as CatalogSku[] };
  }
  const catalog = await one(
    tx,
    sql<SaleCatalog>`
      SELECT EXISTS (SELECT 1 FROM stores WHERE tenant_id = ${tenantId} AND id = ${storeId}) AS store_exists,
             (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'unit', unit, 'tracks_pieces', tracks_pieces)), '[]'::jsonb)
              FROM skus WHERE tenant_id = ${tenantId} AND id = ANY(${skuIds}::uuid[])) AS skus`,
  );
  if (knownStores.size > CACHE_LIMIT) knownStores.clear();
  if (knownSkus.size > CACHE_LIMIT) knownSkus.clear();
  if (catalog.store_exists) knownStores.add(`${tenantId}/${storeId}`);
  for (const sku of catalog.skus) knownSkus.set(`${tenantId}/${sku.id}`, sku);
  return catalog;
}

const mayBulk = (cmd: Command) => cmd.principal.kind === 'token' && roleHas(cmd.principal.role, 'sales.bulk');

/**
 * Locks the balances of an offline sale's SKUs (in sku order, like
 * changeStock) and says how much of each is there.
 */
async function lockBalancesForUpdate(tx: Tx, tenantId: string, storeId: string, skuIds: string[]): Promise<Map<string, number>> {
  const rows = await all(
    tx,
    sql<{ sku_id: string; quantity: number }>`
      SELECT sku_id, quantity FROM stock_balances
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ANY(${skuIds}::uuid[])
      ORDER BY sku_id FOR UPDATE`,
  );
  return new Map(rows.map((row) => [row.sku_id, row.quantity]));
}

/**
 * The in-transaction part of a sale: everything a sale writes, in the
 * command's transaction (`cmd.tx`). Other parts add their own writes here
 * (the money part posts the sale to the ledger) so they commit with the sale.
 *
 * - `online` (POST /v1/sales): every SKU's summed quantity is taken with one
 *   conditional UPDATE (changeStock); any short SKU → `{ ok: false }` listing
 *   every short one, and the caller rolls back (no receipt number is taken:
 *   the counter is advanced after the stock, in the same transaction).
 * - `offline` (POST /v1/sync/sales): the sale already happened at the till.
 *   Stock takes what is there, down to 0, through the ledger; what was missing
 *   is recorded as `shortfall_quantity` on the lines and a review item is
 *   opened. Stock never goes negative, so online sales still never oversell.
 *
 * Piece-tracked SKUs (workshop pieces): their stock is the sum of their live
 * pieces, so a line of such a SKU names the pieces it sells (`piece_ids`).
 * The pieces are locked in id order and checked (lockPiecesForSale); the line's
 * quantity is their sum. Online, any piece not in stock (sold, consumed,
 * deleted, reserved) → `{ ok: false, unavailable }` (409, nothing written).
 * Offline, the pieces still in stock are sold and the others' quantity is the
 * line's shortfall (review item, like any offline shortfall). The sold pieces
 * get status `sold`, `sold_by_op` = this operation and a `piece.sold` event,
 * and their sum leaves stock through the same changeStock call as every other
 * line, so stock stays = Σ live pieces.
 */
export async function recordSale(cmd: Command, input: SaleInput, source: SaleSource = 'online'): Promise<RecordSaleResult> {
  const { tx, tenantId, opId } = cmd;
  const storeId = input.store_id;
  const skuIds = [...new Set(input.items.map((item) => item.sku_id))];

  const catalog = await loadSaleCatalog(tx, tenantId, storeId, skuIds);
  if (!catalog.store_exists) throw new AppError('not_found', 'store was not found');
  const skus = new Map(catalog.skus.map((sku) => [sku.id, sku]));
  const missing = input.items.flatMap((item, index) => (skus.has(item.sku_id) ? [] : [index]));
  if (missing.length > 0) {
    throw new AppError('validation_failed', 'unknown SKU ids', {
      errors: missing.map((index) => ({ path: `/body/items/${index}/sku_id`, message: 'SKU does not exist' })),
    });
  }
  const lineErrors = saleLineErrors(input.items, skus);
  if (lineErrors.length > 0) throw new AppError('validation_failed', 'sale lines do not fit their SKUs', { errors: lineErrors });
  await assertSaleCustomer(tx, tenantId, input);
  // A sale is bulk when the client says so or when any SKU's summed quantity
  // reaches the tenant's bulk_sale_threshold (unset: only explicit bulk
  // sales); summing per SKU means splitting a bulk quantity over lines does
  // not evade it. An explicit bulk sale is refused at once; one over the threshold
  // is found by the statement that writes the sale (it reads the threshold),
  // and refused right after it — rolled back like any refusal.
  if (input.sale_type === 'bulk' && !mayBulk(cmd)) throw bulkForbidden();

  // Pieces first (locked before any balance, like every pieces command).
  const pieceLines = input.items.flatMap((item, index) =>
    item.piece_ids ? [{ index, skuId: item.sku_id, pieceIds: item.piece_ids, quantity: item.quantity }] : [],
  );
  const pieceResults = new Map<number, PieceSaleLineResult>();
  if (pieceLines.length > 0) {
    for (const result of await lockPiecesForSale(cmd, storeId, pieceLines)) pieceResults.set(result.index, result);
    const unavailable = [...pieceResults.values()].flatMap((result) => result.unavailable);
    if (source === 'online' && unavailable.length > 0) return { ok: false, unavailable };
  }
  const lines: QuantifiedLine[] = input.items.map((item, index) => ({
    sku_id: item.sku_id,
    quantity: pieceResults.get(index)?.quantity ?? item.quantity!,
  }));
  const bySku = quantitiesBySku(lines);
  const trackedSkus = new Set(skuIds.filter((skuId) => skus.get(skuId)!.tracks_pieces));
  const plainSkus = skuIds.filter((skuId) => !trackedSkus.has(skuId));

  const saleId = newId();
  let shortfallBySku = new Map<string, number>();
  // What leaves stock per SKU: for plain SKUs the quantity (offline: what is
  // there), for piece-tracked SKUs the pieces actually sold.
  const taken = new Map<string, number>();
  if (source === 'offline') {
    const available = await lockBalancesForUpdate(tx, tenantId, storeId, plainSkus);
    for (const skuId of plainSkus) taken.set(skuId, Math.min(bySku.get(skuId)!, available.get(skuId) ?? 0));
    shortfallBySku = new Map(plainSkus.map((skuId) => [skuId, bySku.get(skuId)! - taken.get(skuId)!]));
  } else {
    for (const skuId of plainSkus) taken.set(skuId, bySku.get(skuId)!);
  }
  const soldPieces: PieceRow[] = [...pieceResults.values()].flatMap((result) => result.available);
  for (const skuId of trackedSkus) taken.set(skuId, 0);
  for (const piece of soldPieces) taken.set(piece.sku_id, taken.get(piece.sku_id)! + Number(piece.quantity));

  const changes: StockChange[] = [...taken].filter(([, quantity]) => quantity > 0).map(([skuId, quantity]) => ({
    storeId,
    skuId,
    quantityChange: -quantity,
    kind: 'sale',
    reason: `sale ${saleId}`,
  }));
  const stock = await changeStock(tx, tenantId, opId, changes);
  if (!stock.ok) {
    const shortages = stock.shortages.map(({ sku_id, requested, available }) => ({ sku_id, requested, available }));
    // A piece-tracked SKU short of the pieces just locked in stock means its
    // balance was already below its pieces (integrity check piece_stock_matches_balance).
    assert(source === 'online' || shortages.every((shortage) => trackedSkus.has(shortage.sku_id)), 'an offline sale only takes what it locked');
    return { ok: false, shortages };
  }
  if (soldPieces.length > 0) await markPiecesSold(cmd, soldPieces);

  const shortfalls = allocateShortfall(lines, shortfallBySku);
  const items: SaleItemView[] = input.items.map((item, index) => ({
    id: newId(),
    line_number: index + 1,
    sku_id: item.sku_id,
    quantity: lines[index]!.quantity,
    unit_price: item.unit_price,
    line_total: lineTotal(skus.get(item.sku_id)!.unit, lines[index]!.quantity, item.unit_price),
    shortfall_quantity: pieceResults.get(index)?.unavailableQuantity ?? shortfalls[index]!,
    piece_ids: item.piece_ids ?? [],
  }));
  for (const [index, result] of pieceResults) {
    if (result.unavailableQuantity > 0) shortfallBySku.set(input.items[index]!.sku_id, (shortfallBySku.get(input.items[index]!.sku_id) ?? 0) + result.unavailableQuantity);
  }
  const total = items.reduce((sum, item) => sum + item.line_total, 0);
  const largestQuantity = Math.max(...bySku.values());

  // Receipt number, sale and lines in one statement. The counter row is
  // advanced relatively inside this transaction, so the number is taken only
  // by a sale that commits (a refused sale returned above, before this).
  const saleRow = await one(
    tx,
    sql<{ receipt_number: number; created_at: Date; client_created_at: Date | null; sale_type: 'regular' | 'bulk' }>`
      WITH settings AS (
        SELECT (settings ->> 'bulk_sale_threshold')::bigint AS bulk_sale_threshold FROM tenants WHERE id = ${tenantId}
      ), number AS (
        INSERT INTO store_receipt_counters (tenant_id, store_id, last_number) VALUES (${tenantId}, ${storeId}, 1)
        ON CONFLICT (tenant_id, store_id) DO UPDATE SET last_number = store_receipt_counters.last_number + 1
        RETURNING last_number
      ), sale AS (
        INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, sale_type, source, customer_id, total, client_created_at, op_id)
        SELECT ${tenantId}, ${saleId}, ${storeId}, number.last_number, ${input.payment_method},
               CASE WHEN ${input.sale_type === 'bulk'} OR ${largestQuantity} >= settings.bulk_sale_threshold THEN 'bulk' ELSE 'regular' END,
               ${source}, ${input.customer_id ?? null}, ${total}, ${input.client_created_at ?? null}, ${opId}
        FROM number LEFT JOIN settings ON true
        RETURNING receipt_number, created_at, client_created_at, sale_type
      ), lines AS (
        INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, shortfall_quantity, piece_ids, op_id)
        SELECT ${tenantId}, l.id, ${saleId}, l.line_number, l.sku_id, l.quantity, l.unit_price, l.line_total, l.shortfall_quantity,
               ARRAY(SELECT p.id::uuid FROM jsonb_array_elements_text(l.piece_ids) WITH ORDINALITY AS p(id, n) ORDER BY p.n), ${opId}
        FROM jsonb_to_recordset(${JSON.stringify(items)}::jsonb)
          AS l(id uuid, line_number integer, sku_id uuid, quantity bigint, unit_price bigint, line_total bigint, shortfall_quantity bigint, piece_ids jsonb)
      )
      SELECT receipt_number, created_at, client_created_at, sale_type FROM sale`,
  );
  if (saleRow.sale_type === 'bulk' && !mayBulk(cmd)) throw bulkForbidden();

  const sale: SaleView = {
    id: saleId,
    op_id: opId,
    store_id: storeId,
    receipt_number: saleRow.receipt_number,
    status: 'completed',
    payment_method: input.payment_method,
    sale_type: saleRow.sale_type,
    source,
    customer_id: input.customer_id ?? null,
    total,
    client_created_at: saleRow.client_created_at,
    created_at: saleRow.created_at,
    voided_at: null,
    voided_by_op: null,
    void_reason: null,
    items,
  };

  // The money side, in this same transaction/savepoint: debit drawer, clearing
  // or customer receivable, credit sales revenue (src/money/postSale.ts).
  const entry = await postSale(tx, cmd, sale);
  if (entry) cmd.touch('journal_entries', entry.entryId, 'created');

  const short = [...shortfallBySku].filter(([, shortfall]) => shortfall > 0);
  if (short.length > 0) {
    const unavailablePieces = [...pieceResults.values()].flatMap((result) => result.unavailable);
    const reviewId = await openReviewItem(tx, tenantId, opId, {
      kind: 'offline_sale_shortage',
      subjectType: 'sale',
      subjectId: saleId,
      storeId,
      detail: {
        sale_id: saleId,
        receipt_number: sale.receipt_number,
        shortages: short.map(([skuId, shortfall]) => ({
          sku_id: skuId,
          requested: bySku.get(skuId)!,
          available: taken.get(skuId)!,
          shortfall,
        })),
        ...(unavailablePieces.length > 0 ? { unavailable_pieces: unavailablePieces } : {}),
      },
      dedupeKey: `offline_sale_shortage:${saleId}`,
    });
    cmd.touch('review_items', reviewId, 'created');
  }

  cmd.storeId = storeId;
  cmd.touch('sales', saleId, 'created');
  for (const item of items) cmd.touch('sale_items', item.id, 'created');
  for (const balance of stock.balances) {
    cmd.touch('stock_ledger', String(balance.ledger_id), 'created');
    cmd.touch('stock_balances', `${balance.store_id}/${balance.sku_id}`, 'updated');
  }
  cmd.touch('store_receipt_counters', storeId, 'updated');
  cmd.audit({ subjectType: 'sale', subjectId: saleId, after: sale });
  return { ok: true, sale };
}

/**
 * The shape rules of sale lines against their SKUs (pure): a line of a
 * piece-tracked SKU names its pieces (`piece_ids`; `quantity` optional), a
 * line of any other SKU has a `quantity` and no `piece_ids`.
 */
export function saleLineErrors(items: SaleInput['items'], skus: ReadonlyMap<string, { tracks_pieces: boolean }>): Array<{ path: string; message: string }> {
  return items.flatMap((item, index) => {
    const tracked = skus.get(item.sku_id)?.tracks_pieces ?? false;
    if (tracked && item.piece_ids === undefined) return [{ path: `/body/items/${index}/piece_ids`, message: 'a piece-tracked SKU is sold by naming its pieces (piece_ids)' }];
    if (!tracked && item.piece_ids !== undefined) return [{ path: `/body/items/${index}/piece_ids`, message: 'the SKU does not track pieces' }];
    if (!tracked && item.quantity === undefined) return [{ path: `/body/items/${index}/quantity`, message: 'is required' }];
    return [];
  });
}

const bulkForbidden = () => new AppError('forbidden', 'a bulk sale needs the sales.bulk permission');

export function insufficientStock(shortages: SaleShortage[]): AppError {
  return new AppError('insufficient_stock', `not enough stock for ${shortages.length} SKU${shortages.length === 1 ? '' : 's'}`, {
    extra: { shortages },
  });
}

/**
 * The command function of a sale (POST /v1/sales and each synced sale): the
 * sale, or a thrown 409 insufficient_stock that rolls it back (its savepoint,
 * under group commit).
 */
export function saleCommand(body: SaleInput, source: SaleSource): CommandFn {
  return async (cmd) => {
    const result = await recordSale(cmd, body, source);
    if (!result.ok) throw 'unavailable' in result ? pieceUnavailable(result.unavailable) : insufficientStock(result.shortages);
    return { status: 201, body: result.sale };
  };
}
