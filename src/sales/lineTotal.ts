import { assert } from '../core/errors.js';
import type { Unit } from '../inventory/inventory.table.js';

/**
 * Money of one sale line, in minor units.
 *
 * Quantities are integer base units; prices are minor units per *sale unit*:
 *   - piece: quantity pieces × price per piece (exact);
 *   - kg:    quantity grams × price per kg / 1000;
 *   - metre: quantity millimetres × price per metre / 1000;
 * the last two rounded half up to a whole minor unit (1,234 g at 999 per kg is
 * 1,232.766 → 1,233). The arithmetic is done in BigInt so no float ever
 * touches money and large lines cannot lose precision.
 *
 * Each line is rounded on its own and the sale total is the sum of its line
 * totals, so the receipt adds up line by line.
 */
export function lineTotal(unit: Unit, quantity: number, unitPrice: number): number {
  const total = exactLineTotal(unit, quantity, unitPrice);
  assert(total <= BigInt(Number.MAX_SAFE_INTEGER), 'line total is within the safe integer range');
  return Number(total);
}

/** The largest amount of money storekeep records, in minor units (the API's `Money`). */
export const MAX_AMOUNT = 9_000_000_000_000;

function exactLineTotal(unit: Unit, quantity: number, unitPrice: number): bigint {
  assert(Number.isSafeInteger(quantity) && quantity > 0, 'quantity is a positive integer');
  assert(Number.isSafeInteger(unitPrice) && unitPrice >= 0, 'unit price is a non-negative integer');
  const product = BigInt(quantity) * BigInt(unitPrice);
  return unit === 'piece' ? product : roundHalfUpDivide(product, 1000n);
}

/**
 * Lines whose total, or a sale whose total, would be above MAX_AMOUNT (a bad
 * request whatever the stock). Pure; `lines` are all the sale's lines, in
 * order, so an error's path names the right one. `totalName` names the whole
 * in the message (a purchase's lines are held to the same limits).
 */
export function amountErrors(
  lines: ReadonlyArray<{ unit: Unit; quantity: number | undefined; unit_price: number }>,
  path = '/body/items',
  totalName = 'sale',
): Array<{ path: string; message: string }> {
  // A line without a quantity yet (a line of pieces before they are read) counts as 0 here.
  const totals = lines.map((line) => (line.quantity === undefined ? 0n : exactLineTotal(line.unit, line.quantity, line.unit_price)));
  const errors = totals.flatMap((total, index) =>
    total > BigInt(MAX_AMOUNT) ? [{ path: `${path}/${index}`, message: `line total ${total} is above the largest amount (${MAX_AMOUNT} minor units)` }] : [],
  );
  const sum = totals.reduce((a, b) => a + b, 0n);
  if (errors.length === 0 && sum > BigInt(MAX_AMOUNT)) errors.push({ path, message: `${totalName} total ${sum} is above the largest amount (${MAX_AMOUNT} minor units)` });
  return errors;
}

/** numerator / divisor rounded half up, for numerator ≥ 0 and divisor > 0. */
export function roundHalfUpDivide(numerator: bigint, divisor: bigint): bigint {
  assert(numerator >= 0n && divisor > 0n, 'round half up of non-negative values');
  return (numerator * 2n + divisor) / (divisor * 2n);
}

export function saleTotal(lines: Array<{ unit: Unit; quantity: number; unit_price: number }>): number {
  return lines.reduce((sum, line) => sum + lineTotal(line.unit, line.quantity, line.unit_price), 0);
}
