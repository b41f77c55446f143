import type { Principal } from '../core/auth.js';
import type { AuditEvent, CommandInput, Effect } from '../core/command.js';
import { AppError, assert, type FieldError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { roleHas } from '../core/permissions.js';
import type { Unit } from '../inventory/inventory.table.js';
import { saleJournalEntry } from '../money/postSale.js';
import type { JournalEntryInput } from '../money/postJournal.js';
import type { PieceSaleLineResult, UnavailablePiece } from '../pieces/sellPieces.js';
import { pieceUnavailable } from '../pieces/sellPieces.js';
import { amountErrors, lineTotal } from './lineTotal.js';
import type { SaleInput, SaleItemView, SaleSource, SaleView } from './sale.table.js';

/**
 * The rules of a sale as pure functions over what the database said
 * (`SaleState`): which sales are refused and why, and — for each accepted
 * one — every row it writes. One planner serves both writers: group commit
 * plans a whole batch of sales against one locked state (each sale sees the
 * stock and receipt number the sales before it left), and a lone sale
 * (POST with workshop pieces, runCommand) plans itself the same way.
 */

export interface CatalogSku {
  id: string;
  unit: Unit;
  tracks_pieces: boolean;
}

/** What a sale is decided against. `stock` and `lastReceipt` are locked and advance as sales are planned. */
export interface SaleState {
  /** Transaction time (the sales' created_at). */
  now: Date;
  storeExists: boolean;
  skus: ReadonlyMap<string, CatalogSku>;
  /** The known customers among the customer_ids of the sales. */
  customers: ReadonlySet<string>;
  bulkThreshold: number | null;
  /** Each client_created_at of the sales as PostgreSQL reads it: UTC, microseconds (`…T10:00:00.123456Z`). */
  clientTimes: ReadonlyMap<string, string>;
  lastReceipt: number;
  /** Base units in stock per SKU of the store (absent: no balance row, 0). */
  stock: Map<string, number>;
  /**
   * Per SKU of the store whose balance a stock count set: that latest count
   * (its id and counted_at, UTC with microseconds, as the balance row carries
   * them: counted_through, counted_by). A synced sale the till made at or
   * before it was already found missing by the count (see planSale).
   */
  counted: Map<string, { countId: string; through: string }>;
  /**
   * Rows of the store that were to be locked without waiting (group commit:
   * rows known held, see loadSaleStates' `withoutWaiting`) and that another
   * transaction held: the SKUs whose balance it held (lowercase ids) and
   * whether it held the receipt counter. A sale needing one is not planned.
   */
  held: { skus: ReadonlySet<string>; counter: boolean };
}

export interface SaleRequest {
  input: CommandInput;
  sale: SaleInput;
  source: SaleSource;
}

export interface SaleShortage {
  sku_id: string;
  requested: number;
  available: number;
}

/** One accepted sale: the API view and every row behind it. */
export interface PlannedSale {
  opId: string;
  sale: SaleView;
  /** client_created_at as stored (UTC, microseconds), or null. */
  clientCreatedAt: string | null;
  /**
   * One stock ledger row of kind `sale` per SKU that left stock, in SKU order,
   * with the balance after it; before it, for a SKU a stock count already
   * found missing (a synced sale made at or before the count's counted_at), a
   * row of kind `count_correction` giving the quantity back (`count_id`: the count).
   */
  ledger: Array<{ sku_id: string; quantity_change: number; quantity_after: number } & ({ kind: 'sale' } | { kind: 'count_correction'; count_id: string })>;
  /** The sale's journal entry (null for a sale of total 0). */
  entry: (JournalEntryInput & { id: string }) | null;
  /** Offline sales short of stock: the review item to open. */
  review: { id: string; detail: Record<string, unknown> } | null;
}

export type SalePlanResult = { ok: true; plan: PlannedSale } | { ok: false; error: AppError };

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

/**
 * The shape rules of sale lines against their SKUs (pure): a line of a
 * piece-tracked SKU names its pieces (`piece_ids`; `quantity` optional), a
 * line of any other SKU has a `quantity` and no `piece_ids`.
 */
export function saleLineErrors(items: SaleInput['items'], skus: ReadonlyMap<string, { tracks_pieces: boolean }>): FieldError[] {
  return items.flatMap((item, index) => {
    const tracked = skus.get(item.sku_id)?.tracks_pieces ?? false;
    if (tracked && item.piece_ids === undefined) return [{ path: `/body/items/${index}/piece_ids`, message: 'a piece-tracked SKU is sold by naming its pieces (piece_ids)' }];
    if (!tracked && item.piece_ids !== undefined) return [{ path: `/body/items/${index}/piece_ids`, message: 'the SKU does not track pieces' }];
    if (!tracked && item.quantity === undefined) return [{ path: `/body/items/${index}/quantity`, message: 'is required' }];
    return [];
  });
}

const mayBulk = (principal: Principal) => principal.kind === 'token' && roleHas(principal.role, 'sales.bulk');

const tooLarge = (errors: FieldError[]) => new AppError('validation_failed', 'amounts above the largest amount storekeep records', { errors });

const bulkForbidden = () => new AppError('forbidden', 'a bulk sale needs the sales.bulk permission');

function insufficientStock(shortages: SaleShortage[]): AppError {
  return new AppError('insufficient_stock', `not enough stock for ${shortages.length} SKU${shortages.length === 1 ? '' : 's'}`, {
    extra: { shortages },
  });
}

/**
 * What makes a sale a bad request whatever the stock: unknown store (404),
 * unknown SKUs or lines that do not fit them, an unknown customer or a credit
 * sale without one (400), an explicit bulk sale without sales.bulk (403).
 */
export function validateSale(state: SaleState, request: SaleRequest): AppError | null {
  const { sale } = request;
  if (!state.storeExists) return new AppError('not_found', 'store was not found');
  const missing = sale.items.flatMap((item, index) => (state.skus.has(item.sku_id) ? [] : [index]));
  if (missing.length > 0) {
    return new AppError('validation_failed', 'unknown SKU ids', {
      errors: missing.map((index) => ({ path: `/body/items/${index}/sku_id`, message: 'SKU does not exist' })),
    });
  }
  // As PostgreSQL read it (a leap second is the next minute, `+05` an hour
  // offset). A value it cannot read (`23:59:60.5`, an offset beyond ±15:59)
  // was left out, and one outside the years 0001–9999 in UTC is null: both
  // are refused at the field, as readClientMoment refuses them elsewhere.
  if (sale.client_created_at !== undefined && !state.clientTimes.has(sale.client_created_at)) {
    return new AppError('validation_failed', 'client_created_at cannot be read as a moment', {
      errors: [{ path: '/body/client_created_at', message: 'must be a date-time PostgreSQL can read, within the years 0001–9999 in UTC' }],
    });
  }
  if (sale.client_created_at !== undefined && Number.isNaN(new Date(state.clientTimes.get(sale.client_created_at) ?? '').getTime())) {
    return new AppError('validation_failed', 'client_created_at is outside the years 0001–9999 (UTC)', {
      errors: [{ path: '/body/client_created_at', message: 'must fall within the years 0001–9999 in UTC' }],
    });
  }
  const lineErrors = saleLineErrors(sale.items, state.skus);
  if (lineErrors.length > 0) return new AppError('validation_failed', 'sale lines do not fit their SKUs', { errors: lineErrors });
  if (sale.reservation_op_id !== undefined && !sale.items.some((item) => item.piece_ids !== undefined)) {
    return new AppError('validation_failed', 'a reservation holds workshop pieces, and this sale names none', {
      errors: [{ path: '/body/reservation_op_id', message: 'only for a sale that names pieces (piece_ids)' }],
    });
  }
  // Lines of pieces are checked again by planSale, once their quantity is known.
  const amounts = amountErrors(sale.items.map((item) => ({ unit: state.skus.get(item.sku_id)!.unit, quantity: item.quantity, unit_price: item.unit_price })));
  if (amounts.length > 0) return tooLarge(amounts);
  const customerId = sale.customer_id ?? null;
  if (customerId === null && sale.payment_method === 'credit') {
    return new AppError('validation_failed', 'a credit sale needs the customer_id of a known customer', {
      errors: [{ path: '/body/customer_id', message: 'is required for a credit sale' }],
    });
  }
  if (customerId !== null && !state.customers.has(customerId)) {
    return new AppError('validation_failed', `customer ${customerId} does not exist`, {
      errors: [{ path: '/body/customer_id', message: 'is not a known customer' }],
    });
  }
  // A sale is bulk when the client says so or when any SKU's summed quantity
  // reaches the tenant's bulk_sale_threshold; an explicit one is refused at
  // once, one over the threshold by planSale (after the stock check).
  if (sale.sale_type === 'bulk' && !mayBulk(request.input.principal)) return bulkForbidden();
  return null;
}

/**
 * Decides one valid sale (validateSale passed) against the state and, when it
 * is accepted, takes its stock and receipt number from the state.
 *
 * - `online`: every SKU's summed quantity must be in stock; any short SKU →
 *   409 insufficient_stock listing every short one, nothing taken (no receipt
 *   number consumed).
 * - `offline`: the sale already happened at the till. Stock takes what is
 *   there, down to 0; what was missing is recorded as `shortfall_quantity` on
 *   the lines (last lines first) and in a review item. Stock never goes
 *   negative, so online sales still never oversell.
 * - Lines of piece-tracked SKUs (`pieces`, by line index, from
 *   lockPiecesForSale): the line's quantity is the sum of its pieces; what
 *   leaves stock is the sum of the pieces still in stock. Online, any
 *   unavailable piece → 409 piece_unavailable; offline, it is the line's shortfall.
 */
export function planSale(state: SaleState, request: SaleRequest, opId: string, pieces: ReadonlyMap<number, PieceSaleLineResult> = new Map()): SalePlanResult {
  const { sale: input, source } = request;
  const storeId = input.store_id;
  const unavailable: UnavailablePiece[] = [...pieces.values()].flatMap((result) => result.unavailable);
  if (source === 'online' && unavailable.length > 0) return { ok: false, error: pieceUnavailable(unavailable) };

  const lines: QuantifiedLine[] = input.items.map((item, index) => ({ sku_id: item.sku_id, quantity: pieces.get(index)?.quantity ?? item.quantity! }));
  const amounts = amountErrors(input.items.map((item, index) => ({ unit: state.skus.get(item.sku_id)!.unit, quantity: lines[index]!.quantity, unit_price: item.unit_price })));
  if (amounts.length > 0) return { ok: false, error: tooLarge(amounts) };
  const bySku = quantitiesBySku(lines);
  const skuIds = [...bySku.keys()].sort();

  // What leaves stock per SKU: for plain SKUs the quantity (offline: at most
  // what is there), for piece-tracked SKUs the pieces actually sold.
  const clientCreatedAt = input.client_created_at === undefined ? null : state.clientTimes.get(input.client_created_at)!;
  const taken = new Map<string, number>();
  const plainShortfall = new Map<string, number>();
  const shortages: SaleShortage[] = [];
  // A synced sale the till made at or before the counted_at of the SKU's
  // latest count: the count found the goods gone, and its variance took them
  // out. The sale still takes them (its `sale` row, as every sale's), after a
  // `count_correction` row gave them back: the balance moves by 0, and no
  // shortfall arises (the goods left the shelf before the count). Only a sale
  // that came through POST /v1/sync/sales with the till's time: an online
  // sale happens when it arrives, whatever its till's clock says. Both times
  // are UTC with microseconds, four-digit years: compared as text.
  // (Per plain SKU: the id of the count that covers the sale.)
  const coveredBy = new Map(
    skuIds.flatMap((skuId) => {
      const count = state.counted.get(skuId);
      const covered = source === 'offline' && clientCreatedAt !== null && count !== undefined && clientCreatedAt <= count.through && !state.skus.get(skuId)!.tracks_pieces;
      return covered ? [[skuId, count.countId] as const] : [];
    }),
  );
  for (const skuId of skuIds) {
    const available = state.stock.get(skuId) ?? 0;
    const requested = bySku.get(skuId)!;
    let take: number;
    if (coveredBy.has(skuId)) {
      taken.set(skuId, requested);
      continue;
    }
    if (state.skus.get(skuId)!.tracks_pieces) {
      take = [...pieces.values()].flatMap((result) => result.available).filter((piece) => piece.sku_id === skuId).reduce((sum, piece) => sum + Number(piece.quantity), 0);
    } else if (source === 'offline') {
      take = Math.min(requested, available);
      plainShortfall.set(skuId, requested - take);
    } else {
      take = requested;
    }
    // Short online; offline only when a piece-tracked balance is below its
    // live pieces (integrity check piece_stock_matches_balance would report it).
    if (take > available) shortages.push({ sku_id: skuId, requested: take, available });
    taken.set(skuId, take);
  }
  if (shortages.length > 0) return { ok: false, error: insufficientStock(shortages) };

  const saleType = input.sale_type === 'bulk' || (state.bulkThreshold !== null && Math.max(...bySku.values()) >= state.bulkThreshold) ? 'bulk' : 'regular';
  if (saleType === 'bulk' && !mayBulk(request.input.principal)) return { ok: false, error: bulkForbidden() };

  // Accepted: take the stock and the next receipt number.
  const ledger: PlannedSale['ledger'] = [];
  for (const skuId of skuIds) {
    const take = taken.get(skuId)!;
    if (take === 0) continue;
    const countId = coveredBy.get(skuId);
    const before = state.stock.get(skuId) ?? 0;
    if (countId !== undefined) ledger.push({ sku_id: skuId, quantity_change: take, quantity_after: before + take, kind: 'count_correction', count_id: countId });
    const after = countId !== undefined ? before : before - take;
    assert(after >= 0, 'stock never goes negative');
    state.stock.set(skuId, after);
    ledger.push({ sku_id: skuId, quantity_change: -take, quantity_after: after, kind: 'sale' });
  }
  state.lastReceipt += 1;

  const shortfalls = allocateShortfall(lines, plainShortfall);
  const items: SaleItemView[] = input.items.map((item, index) => ({
    id: newId(),
    line_number: index + 1,
    sku_id: item.sku_id,
    quantity: lines[index]!.quantity,
    unit_price: item.unit_price,
    line_total: lineTotal(state.skus.get(item.sku_id)!.unit, lines[index]!.quantity, item.unit_price),
    shortfall_quantity: pieces.get(index)?.unavailableQuantity ?? shortfalls[index]!,
    piece_ids: item.piece_ids ?? [],
  }));
  const saleId = newId();
  const sale: SaleView = {
    id: saleId,
    op_id: opId,
    store_id: storeId,
    receipt_number: state.lastReceipt,
    status: 'completed',
    payment_method: input.payment_method,
    sale_type: saleType,
    source,
    customer_id: input.customer_id ?? null,
    total: items.reduce((sum, item) => sum + item.line_total, 0),
    client_created_at: clientCreatedAt === null ? null : new Date(clientCreatedAt),
    created_at: state.now,
    voided_at: null,
    voided_by_op: null,
    void_reason: null,
    void_client_created_at: null,
    items,
    returned_total: 0,
    returns: [],
  };

  const shortBySku = new Map(plainShortfall);
  for (const [index, result] of pieces) {
    if (result.unavailableQuantity > 0) shortBySku.set(input.items[index]!.sku_id, (shortBySku.get(input.items[index]!.sku_id) ?? 0) + result.unavailableQuantity);
  }
  const short = [...bySku.keys()].filter((skuId) => (shortBySku.get(skuId) ?? 0) > 0);
  const review =
    short.length === 0
      ? null
      : {
          id: newId(),
          detail: {
            sale_id: saleId,
            receipt_number: sale.receipt_number,
            shortages: short.map((skuId) => ({ sku_id: skuId, requested: bySku.get(skuId)!, available: taken.get(skuId)!, shortfall: shortBySku.get(skuId)! })),
            ...(unavailable.length > 0 ? { unavailable_pieces: unavailable } : {}),
          },
        };

  const entry = saleJournalEntry(sale);
  return { ok: true, plan: { opId, sale, clientCreatedAt, ledger, entry: entry && { ...entry, id: newId() }, review } };
}

/** The review item an offline sale's shortage opens (see planSale). */
export const shortageReviewItem = (plan: PlannedSale) => ({
  kind: 'offline_sale_shortage',
  subjectType: 'sale',
  subjectId: plan.sale.id,
  storeId: plan.sale.store_id,
  detail: plan.review!.detail,
  dedupeKey: `offline_sale_shortage:${plan.sale.id}`,
});

/** How writeSales names a sale's stock ledger row: its kind and SKU (one of each per sale). */
export const ledgerKey = (kind: PlannedSale['ledger'][number]['kind'], skuId: string): string => `${kind}/${skuId.toLowerCase()}`;

/** The rows an accepted sale touched (GET /v1/operations/{id}) once its ledger rows have ids, and its audit event. */
export function saleEffects(plan: PlannedSale, ledgerIds: ReadonlyMap<string, number>): { effects: Effect[]; events: AuditEvent[] } {
  const { sale } = plan;
  const effects: Effect[] = [];
  if (plan.entry) effects.push({ table: 'journal_entries', id: plan.entry.id, action: 'created' });
  if (plan.review) effects.push({ table: 'review_items', id: plan.review.id, action: 'created' });
  effects.push({ table: 'sales', id: sale.id, action: 'created' });
  for (const item of sale.items) effects.push({ table: 'sale_items', id: item.id, action: 'created' });
  for (const row of plan.ledger) {
    const ledgerId = ledgerIds.get(ledgerKey(row.kind, row.sku_id));
    assert(ledgerId !== undefined, 'every ledger row of the sale was written');
    effects.push({ table: 'stock_ledger', id: String(ledgerId), action: 'created' });
    // A SKU's count_correction row is followed by its sale row: the balance once.
    if (row.kind === 'sale') effects.push({ table: 'stock_balances', id: `${sale.store_id}/${row.sku_id}`, action: 'updated' });
  }
  effects.push({ table: 'store_receipt_counters', id: sale.store_id, action: 'updated' });
  return { effects, events: [{ subjectType: 'sale', subjectId: sale.id, after: sale }] };
}
