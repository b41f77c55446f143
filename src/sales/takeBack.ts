import type { Unit } from '../inventory/inventory.table.js';
import { lineTotal } from './lineTotal.js';

/**
 * Goods taken back from the lines of a record that sold or bought them — a
 * customer's return of a sale (src/sales/returnPlan.ts), a return to the
 * supplier of a purchase (src/money/purchaseReturnPlan.ts). Both plan the
 * same way, and here once: what each line has left, which line a SKU comes
 * back from, and the money of each part.
 */
export interface TakeBackLine {
  line_number: number;
  sku_id: string;
  unit: Unit;
  /** Base units the line sold or bought. */
  quantity: number;
  /** Base units earlier returns already took back from this line. */
  returned_quantity: number;
}

export interface TakeBackItem {
  sku_id: string;
  quantity: number;
}

/** What each requested SKU could still be taken back, for the 409. */
export interface Returnable {
  sku_id: string;
  requested: number;
  returnable: number;
}

export type TakeBack<L extends TakeBackLine> =
  | { ok: true; parts: Array<{ line: L; quantity: number; money: number }>; money_total: number; stock: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; kind: 'invalid' | 'unsupported'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'exceeds'; returnable: Returnable[] };

/**
 * The money of taking `quantity` more back from a line that earlier returns
 * took `before` from, at `price` per unit — by the line's own rounding
 * (lineTotal), cumulatively:
 *
 *   money = lineTotal(before + quantity) − lineTotal(before)
 *
 * so the parts of a line always add up to lineTotal of what they took back
 * together, and a whole line taken back, in any number of parts, comes to
 * exactly its line_total (a sum that telescopes). Rounding each part on its
 * own would not: 3 × 1 g of a 1,500-per-kg cheese is 1.5 → 2 each, 6 in all,
 * for a line of 3 g charged 4.5 → 5.
 */
export function moneyBack(unit: Unit, price: number, before: number, quantity: number): number {
  const totalOf = (taken: number) => (taken === 0 ? 0 : lineTotal(unit, taken, price));
  return totalOf(before + quantity) - totalOf(before);
}

/**
 * Plans taking goods back from a record's lines (pure). The request's lines
 * of one SKU are summed; a SKU comes back from the record's lines of that
 * SKU in line order (the first line's part not yet taken back first), each
 * part's money at its line's `priceOf` (moneyBack). Refused:
 *
 *   - `invalid` (400): a SKU that is on none of the lines (at its request
 *     line, `notOnRecord` its message);
 *   - `unsupported` (422): a SKU whose lines `unsupported` refuses (its
 *     message, at the request line);
 *   - `exceeds` (409): any SKU asked for beyond what its lines hold minus
 *     what earlier returns took back — every requested SKU listed with what
 *     is returnable.
 */
export function planTakeBack<L extends TakeBackLine>(
  lines: readonly L[],
  items: readonly TakeBackItem[],
  rules: { priceOf: (line: L) => number; notOnRecord: string; unsupported?: (skuLines: readonly L[]) => string | undefined },
): TakeBack<L> {
  const bySku = new Map<string, L[]>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    bySku.set(line.sku_id, [...(bySku.get(line.sku_id) ?? []), line]);
  }
  const invalid: Array<{ path: string; message: string }> = [];
  const unsupported: Array<{ path: string; message: string }> = [];
  const requested = new Map<string, number>();
  items.forEach((item, index) => {
    const skuLines = bySku.get(item.sku_id);
    if (!skuLines) {
      invalid.push({ path: `/body/items/${index}/sku_id`, message: rules.notOnRecord });
      return;
    }
    const refusal = rules.unsupported?.(skuLines);
    if (refusal !== undefined) {
      unsupported.push({ path: `/body/items/${index}/sku_id`, message: refusal });
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

  const parts: Array<{ line: L; quantity: number; money: number }> = [];
  for (const [skuId, quantity] of requested) {
    let left = quantity;
    for (const line of bySku.get(skuId)!) {
      const take = Math.min(left, line.quantity - line.returned_quantity);
      if (take <= 0) continue;
      parts.push({ line, quantity: take, money: moneyBack(line.unit, rules.priceOf(line), line.returned_quantity, take) });
      left -= take;
      if (left === 0) break;
    }
  }
  parts.sort((a, b) => a.line.line_number - b.line.line_number);
  return {
    ok: true,
    parts,
    money_total: parts.reduce((sum, part) => sum + part.money, 0),
    stock: [...requested].map(([skuId, quantity]) => ({ sku_id: skuId, quantity })),
  };
}

/**
 * Per SKU of the record, in line order: what its lines hold, what returns
 * took back so far (with `planned`, the parts of a return just planned, by
 * line number), and what a return may still take back. (A customer's return
 * has its own, remainingOf in returnPlan.ts: it counts and names pieces.)
 */
export function takeBackRemaining<L extends TakeBackLine>(
  lines: readonly L[],
  planned: ReadonlyArray<{ line_number: number; quantity: number }>,
): Array<{ sku_id: string; held: number; returned: number; returnable: number }> {
  const bySku = new Map<string, { sku_id: string; held: number; returned: number; returnable: number }>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    const entry = bySku.get(line.sku_id) ?? { sku_id: line.sku_id, held: 0, returned: 0, returnable: 0 };
    const now = planned.filter((part) => part.line_number === line.line_number).reduce((sum, part) => sum + part.quantity, 0);
    entry.held += line.quantity;
    entry.returned += line.returned_quantity + now;
    entry.returnable += line.quantity - line.returned_quantity - now;
    bySku.set(line.sku_id, entry);
  }
  return [...bySku.values()];
}
