/** The cash a store's drawer should hold at the end of a business day, and the variance — pure. */
export interface DrawerMovements {
  /** Opening float, minor units. */
  float: number;
  /** Cash taken by sales that day. */
  cashSales: number;
  /** Cash given back by voids that day (a positive number). */
  cashVoids: number;
  /** Cash received from parties (customers paying) that day. */
  paymentsIn: number;
  /** Cash paid out to parties (suppliers, refunds) that day (a positive number). */
  paymentsOut: number;
  /** Net cash moved by anything else posted to the drawer that day. */
  otherCash: number;
}

export interface SettlementFigures {
  expected_cash: number;
  declared_cash: number;
  /** declared − expected: positive is cash over, negative cash short. */
  variance: number;
}

export function computeSettlement(movements: DrawerMovements, declaredCash: number): SettlementFigures {
  for (const [name, value] of Object.entries({ ...movements, declaredCash })) {
    if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer of minor units`);
  }
  const expected = movements.float + movements.cashSales - movements.cashVoids + movements.paymentsIn - movements.paymentsOut + movements.otherCash;
  return { expected_cash: expected, declared_cash: declaredCash, variance: declaredCash - expected };
}

export type SettlementStatus = 'submitted' | 'approved' | 'rejected';
export type SettlementDecision = 'approve' | 'reject';

/** submitted → approved | rejected; nothing else. */
export function settlementTransition(status: SettlementStatus, decision: SettlementDecision): { ok: true; to: SettlementStatus } | { ok: false; reason: string } {
  if (status !== 'submitted') return { ok: false, reason: `cannot ${decision} a settlement that is ${status} (only one that is submitted)` };
  return { ok: true, to: decision === 'approve' ? 'approved' : 'rejected' };
}

export { etagOf } from '../http/etag.js';
