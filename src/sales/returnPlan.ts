import type { Unit } from '../inventory/inventory.table.js';
import { lineTotal } from './lineTotal.js';

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
export interface ReturnableQuantity {
  sku_id: string;
  requested: number;
  returnable: number;
}

export type ReturnPlan =
  | { ok: true; lines: PlannedReturnLine[]; refund_total: number; stock: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; kind: 'invalid'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'unsupported'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'exceeds'; returnable: ReturnableQuantity[] };

/**
 * The money of `quantity` base units of a line: lineTotal, with 0 for nothing.
 */
const totalOf = (line: ReturnableLine, quantity: number): number => (quantity === 0 ? 0 : lineTotal(line.unit, quantity, line.unit_price));

/**
 * The refund of taking `quantity` more back from a line that earlier returns
 * took `before` from — by the line's own rounding (lineTotal), cumulatively:
 *
 *   refund = lineTotal(before + quantity) − lineTotal(before)
 *
 * so the refunds of a line's returns always add up to lineTotal of what they
 * took back together, and returning a whole line, in any number of parts,
 * refunds exactly its line_total (a sum that telescopes). Rounding each part
 * on its own would not: 3 × 1 g of a 1,500-per-kg cheese is 1.5 → 2 each, 6
 * in all, for a line of 3 g charged 4.5 → 5.
 */
export function returnRefund(line: ReturnableLine, before: number, quantity: number): number {
  return totalOf(line, before + quantity) - totalOf(line, before);
}

/**
 * Plans a return against the sale's lines (pure). The request's lines of one
 * SKU are summed; a SKU is taken back from the sale's lines of that SKU in
 * line order (the first line's unreturned part first). Refused:
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
  const bySku = new Map<string, ReturnableLine[]>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    bySku.set(line.sku_id, [...(bySku.get(line.sku_id) ?? []), line]);
  }
  const invalid: Array<{ path: string; message: string }> = [];
  const unsupported: Array<{ path: string; message: string }> = [];
  const requested = new Map<string, number>();
  items.forEach((item, index) => {
    const skuLines = bySku.get(item.sku_id);
    if (!skuLines) {
      invalid.push({ path: `/body/items/${index}/sku_id`, message: 'is not a SKU this sale sold' });
      return;
    }
    if (skuLines.some((line) => line.piece_ids.length > 0)) {
      unsupported.push({ path: `/body/items/${index}/sku_id`, message: 'names workshop pieces on the sale: a return of pieces is not supported (void the sale instead)' });
      return;
    }
    if (skuLines.some((line) => line.shortfall_quantity > 0)) {
      unsupported.push({ path: `/body/items/${index}/sku_id`, message: 'was short when the offline sale was synced (shortfall_quantity): its return is not supported (void the sale instead)' });
      return;
    }
    requested.set(item.sku_id, (requested.get(item.sku_id) ?? 0) + item.quantity);
  });
  if (invalid.length > 0) return { ok: false, kind: 'invalid', errors: invalid };
  if (unsupported.length > 0) return { ok: false, kind: 'unsupported', errors: unsupported };

  const returnable = [...requested].map(([skuId, quantity]) => ({
    sku_id: skuId,
    requested: quantity,
    returnable: bySku.get(skuId)!.reduce((sum, line) => sum + line.quantity - line.returned_quantity, 0),
  }));
  if (returnable.some((entry) => entry.requested > entry.returnable)) return { ok: false, kind: 'exceeds', returnable };

  const planned: PlannedReturnLine[] = [];
  for (const [skuId, quantity] of requested) {
    let left = quantity;
    for (const line of bySku.get(skuId)!) {
      const take = Math.min(left, line.quantity - line.returned_quantity);
      if (take <= 0) continue;
      planned.push({ sale_item_id: line.sale_item_id, line_number: line.line_number, sku_id: skuId, quantity: take, refund: returnRefund(line, line.returned_quantity, take) });
      left -= take;
      if (left === 0) break;
    }
  }
  planned.sort((a, b) => a.line_number - b.line_number);
  return {
    ok: true,
    lines: planned,
    refund_total: planned.reduce((sum, line) => sum + line.refund, 0),
    stock: [...requested].map(([skuId, quantity]) => ({ sku_id: skuId, quantity })),
  };
}

/** Per SKU of the sale: sold, returned so far (with `planned`), and what a return may still take back. */
export function remainingOf(lines: readonly ReturnableLine[], planned: readonly PlannedReturnLine[] = []): Array<{ sku_id: string; sold: number; returned: number; returnable: number }> {
  const bySku = new Map<string, { sku_id: string; sold: number; returned: number; returnable: number }>();
  // A SKU with a line of pieces or with a shortfall is not returned here, on any of its lines (planReturn
  // refuses the SKU whole, 422): none of it is returnable. It used to be judged line by line, so an offline
  // sale short on the second of two lines of a SKU answered the first line's quantity as returnable.
  const unreturnable = new Set(lines.filter((line) => line.piece_ids.length > 0 || line.shortfall_quantity > 0).map((line) => line.sku_id));
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    const entry = bySku.get(line.sku_id) ?? { sku_id: line.sku_id, sold: 0, returned: 0, returnable: 0 };
    const now = planned.filter((p) => p.sale_item_id === line.sale_item_id).reduce((sum, p) => sum + p.quantity, 0);
    entry.sold += line.quantity;
    entry.returned += line.returned_quantity + now;
    if (!unreturnable.has(line.sku_id)) entry.returnable += line.quantity - line.returned_quantity - now;
    bySku.set(line.sku_id, entry);
  }
  return [...bySku.values()];
}
