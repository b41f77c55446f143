import type { Unit } from '../inventory/inventory.table.js';
import { lineTotal } from '../sales/lineTotal.js';

/** A line of the purchase as a return to the supplier is planned against (pure input). */
export interface ReturnablePurchaseLine {
  line_number: number;
  sku_id: string;
  unit: Unit;
  quantity: number;
  unit_cost: number;
  line_total: number;
  /** Base units earlier returns already sent back from this line. */
  returned_quantity: number;
}

export interface PurchaseReturnRequestItem {
  sku_id: string;
  quantity: number;
}

export interface PlannedPurchaseReturnLine {
  line_number: number;
  sku_id: string;
  quantity: number;
  unit_cost: number;
  /** Minor units credited for this part of the line (the cumulative rule: purchaseReturnCredit). */
  line_total: number;
}

/** What each requested SKU could still be sent back, for the 409. */
export interface ReturnablePurchaseQuantity {
  sku_id: string;
  requested: number;
  returnable: number;
}

export type PurchaseReturnPlan =
  | { ok: true; lines: PlannedPurchaseReturnLine[]; credit_total: number; stock: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; kind: 'invalid'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'exceeds'; returnable: ReturnablePurchaseQuantity[] };

const totalOf = (line: ReturnablePurchaseLine, quantity: number): number => (quantity === 0 ? 0 : lineTotal(line.unit, quantity, line.unit_cost));

/**
 * The credit of sending `quantity` more back from a purchase line that
 * earlier returns sent `before` from — by the line's own rounding (the
 * purchase line's, which is a sale line's: lineTotal), cumulatively, as a
 * sale return's refund (src/sales/returnPlan.ts, returnRefund):
 *
 *   credit = lineTotal(before + quantity) − lineTotal(before)
 *
 * so the credits of a line's returns add up to lineTotal of what they sent
 * back together, and sending a whole line back, in any number of parts,
 * credits exactly its line_total.
 */
export function purchaseReturnCredit(line: ReturnablePurchaseLine, before: number, quantity: number): number {
  return totalOf(line, before + quantity) - totalOf(line, before);
}

/**
 * Plans a return to the supplier against the purchase's lines (pure). The
 * request's lines of one SKU are summed; a SKU is taken from the purchase's
 * lines of that SKU in line order (the first line's part not yet sent back
 * first), each part credited at its line's unit cost. Refused:
 *
 *   - `invalid` (400): a SKU the purchase did not buy (at its request line);
 *   - `exceeds` (409): any SKU asked for beyond what the purchase bought of
 *     it minus what earlier returns sent back — every requested SKU listed
 *     with what is returnable.
 */
export function planPurchaseReturn(lines: readonly ReturnablePurchaseLine[], items: readonly PurchaseReturnRequestItem[]): PurchaseReturnPlan {
  const bySku = new Map<string, ReturnablePurchaseLine[]>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    bySku.set(line.sku_id, [...(bySku.get(line.sku_id) ?? []), line]);
  }
  const invalid: Array<{ path: string; message: string }> = [];
  const requested = new Map<string, number>();
  items.forEach((item, index) => {
    if (!bySku.has(item.sku_id)) {
      invalid.push({ path: `/body/items/${index}/sku_id`, message: 'is not a SKU this purchase bought' });
      return;
    }
    requested.set(item.sku_id, (requested.get(item.sku_id) ?? 0) + item.quantity);
  });
  if (invalid.length > 0) return { ok: false, kind: 'invalid', errors: invalid };

  const returnable = [...requested].map(([skuId, quantity]) => ({
    sku_id: skuId,
    requested: quantity,
    returnable: bySku.get(skuId)!.reduce((sum, line) => sum + line.quantity - line.returned_quantity, 0),
  }));
  if (returnable.some((entry) => entry.requested > entry.returnable)) return { ok: false, kind: 'exceeds', returnable };

  const planned: PlannedPurchaseReturnLine[] = [];
  for (const [skuId, quantity] of requested) {
    let left = quantity;
    for (const line of bySku.get(skuId)!) {
      const take = Math.min(left, line.quantity - line.returned_quantity);
      if (take <= 0) continue;
      planned.push({ line_number: line.line_number, sku_id: skuId, quantity: take, unit_cost: line.unit_cost, line_total: purchaseReturnCredit(line, line.returned_quantity, take) });
      left -= take;
      if (left === 0) break;
    }
  }
  planned.sort((a, b) => a.line_number - b.line_number);
  return {
    ok: true,
    lines: planned,
    credit_total: planned.reduce((sum, line) => sum + line.line_total, 0),
    stock: [...requested].map(([skuId, quantity]) => ({ sku_id: skuId, quantity })),
  };
}

/** Per SKU of the purchase, in line order: bought, sent back so far (with `planned`), and what a return may still send back. */
export function purchaseRemainingOf(
  lines: readonly ReturnablePurchaseLine[],
  planned: readonly PlannedPurchaseReturnLine[] = [],
): Array<{ sku_id: string; purchased: number; returned: number; returnable: number }> {
  const bySku = new Map<string, { sku_id: string; purchased: number; returned: number; returnable: number }>();
  for (const line of [...lines].sort((a, b) => a.line_number - b.line_number)) {
    const entry = bySku.get(line.sku_id) ?? { sku_id: line.sku_id, purchased: 0, returned: 0, returnable: 0 };
    const now = planned.filter((p) => p.line_number === line.line_number).reduce((sum, p) => sum + p.quantity, 0);
    entry.purchased += line.quantity;
    entry.returned += line.returned_quantity + now;
    entry.returnable += line.quantity - line.returned_quantity - now;
    bySku.set(line.sku_id, entry);
  }
  return [...bySku.values()];
}
