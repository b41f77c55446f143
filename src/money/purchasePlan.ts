import type { Unit } from '../inventory/inventory.table.js';
import { amountErrors, lineTotal } from '../sales/lineTotal.js';

/** A receipt line as the request carries it. */
export interface ReceiptLineInput {
  sku_id: string;
  quantity: number;
  /** Minor units per kg / piece / metre (a sale line's unit_price, paid to the supplier). */
  unit_cost?: number | undefined;
}

export interface FieldError {
  path: string;
  message: string;
}

/**
 * Is this receipt a purchase, and is it whole? Pure. A receipt is a purchase
 * when it names `supplier_id`; a purchase carries `unit_cost` on every line
 * (what we owe is known, line by line, from the delivery note), and a
 * `unit_cost` means nothing without the supplier it is owed to. So:
 *
 *   - neither: a plain receipt (stock only, as always) — `purchase: false`;
 *   - `supplier_id` and every line's `unit_cost`: a purchase;
 *   - `supplier_id` with a line lacking `unit_cost`: each such line is
 *     refused at `/body/items/<i>/unit_cost` (goods given free say 0);
 *   - `unit_cost` without `supplier_id`: refused at `/body/supplier_id`.
 */
export function purchaseShape(input: { supplier_id?: string | undefined; items: readonly ReceiptLineInput[] }): { ok: true; purchase: boolean } | { ok: false; errors: FieldError[] } {
  const costed = input.items.flatMap((item, index) => (item.unit_cost === undefined ? [] : [index]));
  if (input.supplier_id === undefined) {
    if (costed.length === 0) return { ok: true, purchase: false };
    return { ok: false, errors: [{ path: '/body/supplier_id', message: 'is required when a line carries unit_cost (the supplier the goods are owed to)' }] };
  }
  const missing = input.items.flatMap((item, index) => (item.unit_cost === undefined ? [index] : []));
  if (missing.length > 0) {
    return {
      ok: false,
      errors: missing.map((index) => ({ path: `/body/items/${index}/unit_cost`, message: 'is required on every line of a receipt that names supplier_id (0 for goods given free)' })),
    };
  }
  return { ok: true, purchase: true };
}

export interface PurchaseLine {
  line_number: number;
  sku_id: string;
  quantity: number;
  unit_cost: number;
  line_total: number;
}

/**
 * The purchase's lines and total, by the sale's rule (src/sales/lineTotal.ts):
 * pieces × cost exactly; grams or millimetres × cost per kg or metre / 1000,
 * rounded half up to a minor unit, each line on its own; the total is the sum
 * of the line totals. A line or a total above the largest amount
 * (9,000,000,000,000 minor units) is an error at its path. Pure.
 */
export function purchaseLines(
  items: ReadonlyArray<{ sku_id: string; quantity: number; unit_cost: number; unit: Unit }>,
): { ok: true; lines: PurchaseLine[]; total: number } | { ok: false; errors: FieldError[] } {
  const errors = amountErrors(
    items.map((item) => ({ unit: item.unit, quantity: item.quantity, unit_price: item.unit_cost })),
    '/body/items',
    'purchase',
  );
  if (errors.length > 0) return { ok: false, errors };
  const lines = items.map((item, index) => ({
    line_number: index + 1,
    sku_id: item.sku_id,
    quantity: item.quantity,
    unit_cost: item.unit_cost,
    line_total: lineTotal(item.unit, item.quantity, item.unit_cost),
  }));
  return { ok: true, lines, total: lines.reduce((sum, line) => sum + line.line_total, 0) };
}
