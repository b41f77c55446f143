import { AppError } from '../core/errors.js';

/** The cash a store's drawer should hold at the end of a business day, and the variance — pure. */
export interface DrawerMovements {
  /** Opening float, minor units. */
  float: number;
  /** Cash taken by sales that day. */
  cashSales: number;
  /** Cash given back by voids that day (a positive number). */
  cashVoids: number;
  /** Cash given back by partial returns of sales that day (a positive number; entries of kind sale_return). */
  cashReturns: number;
  /** Cash received from parties (customers paying) that day. */
  paymentsIn: number;
  /** Cash paid out to parties (suppliers, refunds) that day (a positive number). */
  paymentsOut: number;
  /** Net cash moved by anything else posted to the drawer that day (e.g. a payment's reversal, `payment_revert`). */
  otherCash: number;
}

export interface SettlementFigures {
  expected_cash: number;
  declared_cash: number;
  /** declared − expected: positive is cash over, negative cash short. */
  variance: number;
}

/**
 * Each figure is bounded (accounts' totals up to 9 × 10^15, a count up to
 * 9 × 10^12), but their sums are not: a day whose drawer moved close to its
 * account's limit can give an expected cash or a variance beyond 2^53 − 1,
 * which would not read back exactly. Computed exactly (BigInt) and refused
 * as `422 limit_exceeded`, like the account limits, rather than stored rounded
 * or failing as a 500.
 */
export function computeSettlement(movements: DrawerMovements, declaredCash: number): SettlementFigures {
  for (const [name, value] of Object.entries({ ...movements, declaredCash })) {
    if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer of minor units`);
  }
  const m = (value: number) => BigInt(value);
  const expected = m(movements.float) + m(movements.cashSales) - m(movements.cashVoids) - m(movements.cashReturns) + m(movements.paymentsIn) - m(movements.paymentsOut) + m(movements.otherCash);
  const variance = m(declaredCash) - expected;
  for (const [name, value] of [['expected cash', expected], ['variance', variance]] as const) {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      // Not the figure itself: a blind count (settlements.expected.read) must
      // not learn the expected cash from its refusal.
      throw new AppError('limit_exceeded', `the ${name} of this count is beyond what a settlement records (±${Number.MAX_SAFE_INTEGER} minor units)`);
    }
  }
  return { expected_cash: Number(expected), declared_cash: declaredCash, variance: Number(variance) };
}

export type SettlementStatus = 'submitted' | 'approved' | 'rejected';
export type SettlementDecision = 'approve' | 'reject';

/** submitted → approved | rejected; nothing else. */
export function settlementTransition(status: SettlementStatus, decision: SettlementDecision): { ok: true; to: SettlementStatus } | { ok: false; reason: string } {
  if (status !== 'submitted') return { ok: false, reason: `cannot ${decision} a settlement that is ${status} (only one that is submitted)` };
  return { ok: true, to: decision === 'approve' ? 'approved' : 'rejected' };
}

export { etagOf } from '../http/etag.js';
