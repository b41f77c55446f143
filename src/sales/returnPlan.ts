import type { Unit } from '../inventory/inventory.table.js';
import { MAX_PIECES_PER_SALE } from '../pieces/sellPieces.js';
import { moneyBack, planTakeBack, type Returnable } from './takeBack.js';

/** A line of the sale as a return is planned against (pure input). */
export interface ReturnableLine {
  sale_item_id: string;
  line_number: number;
  sku_id: string;
  unit: Unit;
  quantity: number;
  unit_price: number;
  line_total: number;
  shortfall_quantity: number;
  /** Piece-tracked lines name their workshop pieces. */
  piece_ids: string[];
  /** Base units earlier returns already took back from this line. */
  returned_quantity: number;
  /** The pieces earlier returns already took back from this line ([] for other lines). */
  returned_piece_ids: string[];
  /**
   * The line's pieces the sale still holds (sold_by_op = the sale's
   * operation), in id order: neither taken back by a return nor — on an
   * offline line that synced short — missing when it was synced (those were
   * its shortfall, never sold by it). [] for other lines.
   */
  held_piece_ids: string[];
}

/**
 * A returned line as requested: `quantity` for a SKU the sale did not sell
 * as workshop pieces; `piece_ids` for one it did (`quantity`, if sent, must
 * be the sum of the pieces' quantities), as a sale line names them.
 */
export interface ReturnRequestItem {
  sku_id: string;
  quantity?: number | undefined;
  piece_ids?: string[] | undefined;
}

export interface PlannedReturnLine {
  sale_item_id: string;
  line_number: number;
  sku_id: string;
  quantity: number;
  refund: number;
  /** The pieces taken back from the line, as the request named them ([] for a line without pieces). */
  piece_ids: string[];
}

/** A named piece as the return found it, locked (pieces.quantity never changes). */
export interface ReturnedPieceState {
  id: string;
  quantity: number;
  status: string;
  sold_by_op: string | null;
  deleted_by_op: string | null;
}

/** A named piece the return refuses (409 piece_not_returnable). */
export interface RefusedPiece {
  id: string;
  sku_id: string;
  path: string;
  /** not_sold_by_sale: on none of the sale's lines of the SKU, or not sold by the sale now; already_returned: an earlier return took it back. */
  reason: 'not_sold_by_sale' | 'already_returned';
}

/** What each requested SKU could still be returned, for the 409. */
export type ReturnableQuantity = Returnable;

export type ReturnPlan =
  | { ok: true; lines: PlannedReturnLine[]; refund_total: number; stock: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; kind: 'invalid'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'pieces'; pieces: RefusedPiece[] }
  | { ok: false; kind: 'exceeds'; returnable: ReturnableQuantity[] };

/**
 * The refund of taking `quantity` more back from a line that earlier returns
 * took `before` from — by the line's own rounding, cumulatively (moneyBack):
 * the refunds of a line's returns always add up to lineTotal of what they
 * took back together, and returning a whole line, in any number of parts,
 * refunds exactly its line_total.
 */
export function returnRefund(line: ReturnableLine, before: number, quantity: number): number {
  return moneyBack(line.unit, line.unit_price, before, quantity);
}

const soldAsPieces = (skuLines: readonly ReturnableLine[]) => skuLines.some((line) => line.piece_ids.length > 0);

/**
 * The pieces a return names that are on one of the sale's lines of their
 * SKU and that no earlier return took back: the ones the command locks (in
 * id order, after the sale row, as a void does) before planning. Pure.
 */
export function piecesToLock(lines: readonly ReturnableLine[], items: readonly ReturnRequestItem[]): string[] {
  const ids = new Set<string>();
  for (const item of items) {
    for (const id of item.piece_ids ?? []) {
      if (lines.some((line) => line.sku_id === item.sku_id && line.piece_ids.includes(id) && !line.returned_piece_ids.includes(id))) ids.add(id);
    }
  }
  return [...ids].sort();
}

/**
 * Plans a return against the sale's lines (pure). Refused, in this order:
 *
 *   - `invalid` (400): a SKU the sale did not sell (at its request line's
 *     sku_id); a SKU it sold as workshop pieces without `piece_ids`, or
 *     `piece_ids` on one it did not (at piece_ids); no `quantity` for a SKU
 *     not sold as pieces; a piece named twice in the return; more pieces
 *     than a sale may hold (MAX_PIECES_PER_SALE);
 *   - `pieces` (409): a named piece on none of the sale's lines of its SKU,
 *     not sold by the sale (`saleOpId`) as `locked` shows it — unless
 *     `afterVoid` (a return the till made before the sale's void, recorded
 *     after it: the void put the sale's pieces back, so only their being on
 *     the line counts) —, or taken back by an earlier return — every such
 *     piece listed;
 *   - `invalid` (400): a piece line's `quantity` that is not its pieces' sum;
 *   - `exceeds` (409): a quantity SKU asked for beyond what the sale sold of
 *     it minus what earlier returns took back — every requested quantity SKU
 *     listed with what is returnable.
 *
 * Quantity SKUs: the request's lines of one SKU are summed and taken back
 * from the sale's lines of that SKU in line order (planTakeBack). Pieces are
 * taken back from the line that names them; its part is their sum. Each
 * part refunds by the cumulative rule (returnRefund).
 *
 * A line of an offline sale that synced short (shortfall_quantity) is
 * returned like any other: the customer paid for all of it and has it, so
 * all of its quantity may come back (its stock too: returnSale puts back
 * all a return takes back, and a void gives back only what the sale took
 * and its returns did not). Of a line of pieces, only the pieces the sale
 * sold: a piece missing when it synced (the shortfall) is not sold by the
 * sale, so `not_sold_by_sale` like any other piece it did not sell.
 */
export function planReturn(
  lines: readonly ReturnableLine[],
  items: readonly ReturnRequestItem[],
  pieces: { saleOpId: string; locked: ReadonlyMap<string, ReturnedPieceState>; afterVoid?: boolean } = { saleOpId: '', locked: new Map() },
): ReturnPlan {
  const bySku = new Map<string, ReturnableLine[]>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) bySku.set(line.sku_id, [...(bySku.get(line.sku_id) ?? []), line]);

  const invalid: Array<{ path: string; message: string }> = [];
  const named = new Set<string>();
  items.forEach((item, index) => {
    const skuLines = bySku.get(item.sku_id);
    if (!skuLines) {
      invalid.push({ path: `/body/items/${index}/sku_id`, message: 'is not a SKU this sale sold' });
      return;
    }
    if (soldAsPieces(skuLines) && item.piece_ids === undefined) {
      invalid.push({ path: `/body/items/${index}/piece_ids`, message: 'the sale sold this SKU as workshop pieces: name the pieces brought back' });
    } else if (!soldAsPieces(skuLines) && item.piece_ids !== undefined) {
      invalid.push({ path: `/body/items/${index}/piece_ids`, message: 'the sale did not sell this SKU as workshop pieces' });
    } else if (!soldAsPieces(skuLines) && item.quantity === undefined) {
      invalid.push({ path: `/body/items/${index}/quantity`, message: 'is required for a SKU not sold as workshop pieces' });
    }
    (item.piece_ids ?? []).forEach((id, position) => {
      if (named.has(id)) invalid.push({ path: `/body/items/${index}/piece_ids/${position}`, message: 'piece is named twice in this return' });
      named.add(id);
    });
  });
  // a sale holds at most MAX_PIECES_PER_SALE pieces: a return naming more names pieces it did not sell
  if (named.size > MAX_PIECES_PER_SALE) invalid.push({ path: '/body/items', message: `names ${named.size} pieces; a sale has at most ${MAX_PIECES_PER_SALE}` });
  if (invalid.length > 0) return { ok: false, kind: 'invalid', errors: invalid };

  // Pieces: each from the line of its SKU that names it, sold by the sale and not taken back yet.
  const refused: RefusedPiece[] = [];
  const byLine = new Map<string, { line: ReturnableLine; pieceIds: string[]; quantity: number }>();
  items.forEach((item, index) => {
    let sum = 0;
    (item.piece_ids ?? []).forEach((id, position) => {
      const path = `/body/items/${index}/piece_ids/${position}`;
      const line = bySku.get(item.sku_id)!.find((candidate) => candidate.piece_ids.includes(id));
      const state = pieces.locked.get(id);
      if (line?.returned_piece_ids.includes(id)) {
        refused.push({ id, sku_id: item.sku_id, path, reason: 'already_returned' });
      } else if (!line || !state || (!pieces.afterVoid && (state.status !== 'sold' || state.sold_by_op !== pieces.saleOpId || state.deleted_by_op !== null))) {
        refused.push({ id, sku_id: item.sku_id, path, reason: 'not_sold_by_sale' });
      } else {
        const part = byLine.get(line.sale_item_id) ?? { line, pieceIds: [], quantity: 0 };
        part.pieceIds.push(id);
        part.quantity += state.quantity;
        byLine.set(line.sale_item_id, part);
        sum += state.quantity;
      }
    });
    if (item.piece_ids !== undefined && item.quantity !== undefined && refused.length === 0 && item.quantity !== sum) {
      invalid.push({ path: `/body/items/${index}/quantity`, message: `must equal the sum of the named pieces' quantities (${sum})` });
    }
  });
  if (refused.length > 0) return { ok: false, kind: 'pieces', pieces: refused };
  if (invalid.length > 0) return { ok: false, kind: 'invalid', errors: invalid };

  // Quantities: the SKUs not sold as pieces.
  const quantityItems = items.filter((item) => item.piece_ids === undefined).map((item) => ({ sku_id: item.sku_id, quantity: item.quantity ?? 0 }));
  const byQuantity = planTakeBack(
    lines.filter((line) => !soldAsPieces(bySku.get(line.sku_id)!)),
    quantityItems,
    { priceOf: (line) => line.unit_price, notOnRecord: 'is not a SKU this sale sold' },
  );
  if (!byQuantity.ok) {
    if (byQuantity.kind === 'exceeds') return byQuantity;
    return { ok: false, kind: 'invalid', errors: byQuantity.errors }; // a SKU on no line (refused above already); no SKU is unsupported here
  }

  const planned: PlannedReturnLine[] = [
    ...byQuantity.parts.map(({ line, quantity, money }) => ({ sale_item_id: line.sale_item_id, line_number: line.line_number, sku_id: line.sku_id, quantity, refund: money, piece_ids: [] })),
    ...[...byLine.values()].map(({ line, pieceIds, quantity }) => ({
      sale_item_id: line.sale_item_id,
      line_number: line.line_number,
      sku_id: line.sku_id,
      quantity,
      refund: returnRefund(line, line.returned_quantity, quantity),
      piece_ids: pieceIds,
    })),
  ].sort((a, b) => a.line_number - b.line_number);
  const stock = new Map<string, number>();
  for (const line of planned) stock.set(line.sku_id, (stock.get(line.sku_id) ?? 0) + line.quantity);
  return {
    ok: true,
    lines: planned,
    refund_total: planned.reduce((sum, line) => sum + line.refund, 0),
    stock: [...stock].map(([skuId, quantity]) => ({ sku_id: skuId, quantity })),
  };
}

/** A SKU's entry in `remaining` (POST /v1/sales/{id}/returns). */
export interface RemainingOfSku {
  sku_id: string;
  sold: number;
  returned: number;
  returnable: number;
  /** Of a SKU the sale sold as workshop pieces, the pieces a return may still take back, sorted; [] for other SKUs. */
  returnable_piece_ids: string[];
}

/**
 * Per SKU of the sale, in line order: sold, returned so far (with
 * `planned`), and what a return may still take back — of a SKU not sold as
 * pieces, what its lines sold less what returns took back (an offline line
 * that synced short included: planReturn takes all of it back); of a SKU
 * sold as workshop pieces, the sum of the pieces the sale still holds
 * (its lines' quantity less their shortfall — the pieces missing when it
 * synced, never sold by it — less what returns took back), and those
 * pieces' ids (`held_piece_ids` less the ones `planned` takes back), sorted.
 * A SKU short on an offline sale used to be returnable 0 (its return was
 * 422: void the sale instead).
 */
export function remainingOf(lines: readonly ReturnableLine[], planned: readonly PlannedReturnLine[] = []): RemainingOfSku[] {
  const bySku = new Map<string, RemainingOfSku>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    const entry = bySku.get(line.sku_id) ?? { sku_id: line.sku_id, sold: 0, returned: 0, returnable: 0, returnable_piece_ids: [] };
    const now = planned.filter((part) => part.line_number === line.line_number);
    const nowQuantity = now.reduce((sum, part) => sum + part.quantity, 0);
    const nowPieces = new Set(now.flatMap((part) => part.piece_ids));
    const ofPieces = line.piece_ids.length > 0;
    entry.sold += line.quantity;
    entry.returned += line.returned_quantity + nowQuantity;
    entry.returnable += line.quantity - (ofPieces ? line.shortfall_quantity : 0) - line.returned_quantity - nowQuantity;
    entry.returnable_piece_ids.push(...line.held_piece_ids.filter((id) => !nowPieces.has(id)));
    bySku.set(line.sku_id, entry);
  }
  return [...bySku.values()].map((entry) => ({ ...entry, returnable_piece_ids: [...entry.returnable_piece_ids].sort() }));
}
