import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { computeSettlement, settlementTransition } from './settlementMath.js';

const day = { float: 10_000, cashSales: 52_500, cashVoids: 2_500, cashReturns: 0, paymentsIn: 3_000, paymentsOut: 8_000, otherCash: 0 };

describe('computeSettlement', () => {
  it('expected = float + cash sales − cash voids − cash returns + payments in − payments out + other', () => {
    assert.deepEqual(computeSettlement(day, 55_000), { expected_cash: 55_000, declared_cash: 55_000, variance: 0 });
    assert.deepEqual(computeSettlement({ ...day, cashReturns: 1_250 }, 53_750), { expected_cash: 53_750, declared_cash: 53_750, variance: 0 });
  });
  it('a short drawer has a negative variance, an over drawer a positive one', () => {
    assert.equal(computeSettlement(day, 54_900).variance, -100);
    assert.equal(computeSettlement(day, 55_250).variance, 250);
  });
  it('a day with no movements expects the float', () => {
    const quiet = { float: 5_000, cashSales: 0, cashVoids: 0, cashReturns: 0, paymentsIn: 0, paymentsOut: 0, otherCash: 0 };
    assert.deepEqual(computeSettlement(quiet, 5_000), { expected_cash: 5_000, declared_cash: 5_000, variance: 0 });
  });
  it('other drawer movements count with their sign', () => {
    assert.equal(computeSettlement({ ...day, otherCash: -1_000 }, 54_000).variance, 0);
  });
  it('figures beyond 2^53 − 1 are limit_exceeded, computed exactly (not rounded)', () => {
    const outflow = { float: 10_000, cashSales: 0, cashVoids: 0, cashReturns: 0, paymentsIn: 0, paymentsOut: 9_000_000_000_000_000, otherCash: 0 };
    assert.throws(
      () => computeSettlement(outflow, 9_000_000_000_000),
      (error: unknown) =>
        error instanceof Error && (error as { code?: string }).code === 'limit_exceeded' &&
        // the refusal does not give the figure away (a blind count would learn the expected cash from it)
        !/8,?999,?999,?999,?990,?000|9,?008,?999,?999,?990,?000/.test(error.message),
    );
    assert.deepEqual(computeSettlement(outflow, 1), { expected_cash: -8_999_999_999_990_000, declared_cash: 1, variance: 8_999_999_999_990_001 });
    const inflow = { float: 9_000_000_000_000, cashSales: 9_000_000_000_000_000, cashVoids: 0, cashReturns: 0, paymentsIn: 0, paymentsOut: 0, otherCash: 0 };
    assert.throws(() => computeSettlement(inflow, 0), { code: 'limit_exceeded' });
    // the sum passes 2^53 on the way but ends within: exact
    assert.equal(computeSettlement({ ...inflow, cashVoids: 9_000_000_000_001 }, 0).expected_cash, 8_999_999_999_999_999);
    assert.equal(computeSettlement({ ...inflow, cashReturns: 9_000_000_000_001 }, 0).expected_cash, 8_999_999_999_999_999);
  });
  it('refuses non-integer money', () => {
    assert.throws(() => computeSettlement({ ...day, cashSales: 1.5 }, 0));
    assert.throws(() => computeSettlement({ ...day, cashReturns: 0.5 }, 0));
    assert.throws(() => computeSettlement(day, 0.1));
  });
});

describe('settlement decisions and versions', () => {
  it('only a submitted settlement can be approved or rejected', () => {
    assert.deepEqual(settlementTransition('submitted', 'approve'), { ok: true, to: 'approved' });
    assert.deepEqual(settlementTransition('submitted', 'reject'), { ok: true, to: 'rejected' });
    for (const status of ['approved', 'rejected'] as const) {
      for (const decision of ['approve', 'reject'] as const) assert.equal(settlementTransition(status, decision).ok, false);
    }
  });
});
