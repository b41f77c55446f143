import type { Unit } from '../inventory/inventory.table.js';
import { moneyBack, planTakeBack, takeBackRemaining, type Returnable } from './takeBack.js';

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
}

export interface ReturnRequestItem {
  sku_id: string;
  quantity: number;
}

export interface PlannedReturnLine {
  sale_item_id: string;
  line_number: number;
  sku_id: string;
  quantity: number;
  refund: number;
}

/** What each requested SKU could still be returned, for the 409. */
export type ReturnableQuantity = Returnable;

export type ReturnPlan =
  | { ok: true; lines: PlannedReturnLine[]; refund_total: number; stock: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; kind: 'invalid'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'unsupported'; errors: Array<{ path: string; message: string }> }
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

/** Why a SKU's lines cannot be returned here (422), or undefined. */
function unsupportedReturn(skuLines: readonly ReturnableLine[]): string | undefined {
  if (skuLines.some((line) => line.piece_ids.length > 0)) return 'names workshop pieces on the sale: a return of pieces is not supported (void the sale instead)';
  if (skuLines.some((line) => line.shortfall_quantity > 0)) return 'was short when the offline sale was synced (shortfall_quantity): its return is not supported (void the sale instead)';
  return undefined;
}

/**
 * Plans a return against the sale's lines (pure; planTakeBack). The
 * request's lines of one SKU are summed; a SKU is taken back from the sale's
 * lines of that SKU in line order (the first line's unreturned part first).
 * Refused:
 *
 *   - `invalid` (400): a SKU the sale did not sell (at its request line);
 *   - `unsupported` (422): a SKU on a line that named workshop pieces, or on
 *     an offline line that recorded a shortfall (not returned here: void the
 *     sale instead);
 *   - `exceeds` (409): any SKU asked for beyond what the sale sold of it
 *     minus what earlier returns took back — every requested SKU listed with
 *     what is returnable.
 */
export function planReturn(lines: readonly ReturnableLine[], items: readonly ReturnRequestItem[]): ReturnPlan {
  const plan = planTakeBack(lines, items, { priceOf: (line) => line.unit_price, notOnRecord: 'is not a SKU this sale sold', unsupported: unsupportedReturn });
  if (!plan.ok) return plan;
  return {
    ok: true,
    lines: plan.parts.map(({ line, quantity, money }) => ({ sale_item_id: line.sale_item_id, line_number: line.line_number, sku_id: line.sku_id, quantity, refund: money })),
    refund_total: plan.money_total,
    stock: plan.stock,
  };
}

/**
 * Per SKU of the sale: sold, returned so far (with `planned`), and what a
 * return may still take back. A SKU with a line of pieces or with a
 * shortfall is not returned here, on any of its lines (planReturn refuses
 * the SKU whole, 422): none of it is returnable. It used to be judged line
 * by line, so an offline sale short on the second of two lines of a SKU
 * answered the first line's quantity as returnable.
 */
export function remainingOf(lines: readonly ReturnableLine[], planned: readonly PlannedReturnLine[] = []): Array<{ sku_id: string; sold: number; returned: number; returnable: number }> {
  return takeBackRemaining(lines, planned, (line) => line.piece_ids.length > 0 || line.shortfall_quantity > 0).map(({ held, ...rest }) => ({
    sku_id: rest.sku_id,
    sold: held,
    returned: rest.returned,
    returnable: rest.returnable,
  }));
}
