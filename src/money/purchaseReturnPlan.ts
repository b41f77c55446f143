import type { Unit } from '../inventory/inventory.table.js';
import { moneyBack, planTakeBack, takeBackRemaining, type Returnable } from '../sales/takeBack.js';

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
export type ReturnablePurchaseQuantity = Returnable;

export type PurchaseReturnPlan =
  | { ok: true; lines: PlannedPurchaseReturnLine[]; credit_total: number; stock: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; kind: 'invalid'; errors: Array<{ path: string; message: string }> }
  | { ok: false; kind: 'exceeds'; returnable: ReturnablePurchaseQuantity[] };

/**
 * The credit of sending `quantity` more back from a purchase line that
 * earlier returns sent `before` from — by the line's own rounding,
 * cumulatively, as a sale return's refund (moneyBack, src/sales/takeBack.ts):
 *
 *   credit = lineTotal(before + quantity) − lineTotal(before)
 *
 * so the credits of a line's returns add up to lineTotal of what they sent
 * back together, and sending a whole line back, in any number of parts,
 * credits exactly its line_total.
 */
export function purchaseReturnCredit(line: ReturnablePurchaseLine, before: number, quantity: number): number {
  return moneyBack(line.unit, line.unit_cost, before, quantity);
}

/**
 * Plans a return to the supplier against the purchase's lines (pure;
 * planTakeBack, as a sale's return is planned). The request's lines of one
 * SKU are summed; a SKU is taken from the purchase's lines of that SKU in
 * line order (the first line's part not yet sent back first), each part
 * credited at its line's unit cost. Refused:
 *
 *   - `invalid` (400): a SKU the purchase did not buy (at its request line);
 *   - `exceeds` (409): any SKU asked for beyond what the purchase bought of
 *     it minus what earlier returns sent back — every requested SKU listed
 *     with what is returnable.
 */
export function planPurchaseReturn(lines: readonly ReturnablePurchaseLine[], items: readonly PurchaseReturnRequestItem[]): PurchaseReturnPlan {
  const plan = planTakeBack(lines, items, { priceOf: (line) => line.unit_cost, notOnRecord: 'is not a SKU this purchase bought' });
  if (!plan.ok) {
    if (plan.kind === 'exceeds') return plan;
    return { ok: false, kind: 'invalid', errors: plan.errors };
  }
  return {
    ok: true,
    lines: plan.parts.map(({ line, quantity, money }) => ({ line_number: line.line_number, sku_id: line.sku_id, quantity, unit_cost: line.unit_cost, line_total: money })),
    credit_total: plan.money_total,
    stock: plan.stock,
  };
}

/** Per SKU of the purchase, in line order: bought, sent back so far (with `planned`), and what a return may still send back. */
export function purchaseRemainingOf(
  lines: readonly ReturnablePurchaseLine[],
  planned: readonly PlannedPurchaseReturnLine[] = [],
): Array<{ sku_id: string; purchased: number; returned: number; returnable: number }> {
  return takeBackRemaining(lines, planned).map(({ sku_id, held, returned, returnable }) => ({ sku_id, purchased: held, returned, returnable }));
}
