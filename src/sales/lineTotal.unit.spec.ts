import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { amountErrors, lineTotal, MAX_AMOUNT, roundHalfUpDivide, saleTotal } from './lineTotal.js';

describe('line totals', () => {
  it('pieces: quantity × price, exact', () => {
    assert.equal(lineTotal('piece', 3, 250), 750);
    assert.equal(lineTotal('piece', 1, 0), 0);
  });

  it('kg: grams × price per kg / 1000, rounded half up', () => {
    assert.equal(lineTotal('kg', 1000, 999), 999);
    assert.equal(lineTotal('kg', 1234, 999), 1233); // 1232.766
    assert.equal(lineTotal('kg', 1234, 299), 369); // the README's example: 1,234 g at 2.99/kg → 3.69 (368.966)
    assert.equal(lineTotal('kg', 500, 1), 1); // 0.5 → 1 (half up)
    assert.equal(lineTotal('kg', 499, 1), 0); // 0.499 → 0
    assert.equal(lineTotal('kg', 1500, 333), 500); // 499.5 → 500
    assert.equal(lineTotal('kg', 1, 1), 0);
  });

  it('metre: millimetres × price per metre / 1000, rounded half up', () => {
    assert.equal(lineTotal('metre', 2500, 1200), 3000);
    assert.equal(lineTotal('metre', 1, 500), 1); // 0.5 → 1
    assert.equal(lineTotal('metre', 333, 10), 3); // 3.33 → 3
  });

  it('large values stay exact (BigInt arithmetic)', () => {
    assert.equal(lineTotal('kg', 1_000_000_000, 9_000_000), 9_000_000_000_000);
    assert.equal(lineTotal('piece', 1_000_000, 1_000_000_000), 1_000_000_000_000_000);
  });

  it('refuses values outside integers (a bug, never a user error)', () => {
    assert.throws(() => lineTotal('kg', 1.5, 10), /assertion failed/);
    assert.throws(() => lineTotal('kg', 0, 10), /assertion failed/);
    assert.throws(() => lineTotal('piece', 1, -1), /assertion failed/);
  });

  it('amountErrors: a line or a sale above the largest amount (9,000,000,000,000 minor units)', () => {
    assert.deepEqual(amountErrors([{ unit: 'piece', quantity: 1, unit_price: MAX_AMOUNT }]), []);
    assert.deepEqual(amountErrors([{ unit: 'kg', quantity: 1_000_000_000, unit_price: 9_000_000 }]), [], '9,000,000,000,000 exactly is allowed');
    assert.deepEqual(amountErrors([{ unit: 'piece', quantity: 1, unit_price: 1 }, { unit: 'piece', quantity: 1_000_000_000_000, unit_price: 9_000_000_000_000 }]).map((e) => e.path), ['/body/items/1']);
    assert.deepEqual(amountErrors([{ unit: 'piece', quantity: 1, unit_price: MAX_AMOUNT }, { unit: 'piece', quantity: 1, unit_price: 1 }]).map((e) => e.path), ['/body/items']);
    // a line whose quantity is not known yet (pieces) keeps its place: the error names the right line
    assert.deepEqual(amountErrors([{ unit: 'metre', quantity: undefined, unit_price: 5 }, { unit: 'piece', quantity: 2, unit_price: MAX_AMOUNT }]).map((e) => e.path), ['/body/items/1']);
  });

  it('roundHalfUpDivide', () => {
    assert.equal(roundHalfUpDivide(0n, 1000n), 0n);
    assert.equal(roundHalfUpDivide(1500n, 1000n), 2n);
    assert.equal(roundHalfUpDivide(2500n, 1000n), 3n);
    assert.equal(roundHalfUpDivide(2499n, 1000n), 2n);
  });

  it('sale total is the sum of rounded line totals', () => {
    assert.equal(
      saleTotal([
        { unit: 'kg', quantity: 500, unit_price: 1 },
        { unit: 'kg', quantity: 500, unit_price: 1 },
        { unit: 'piece', quantity: 2, unit_price: 10 },
      ]),
      22,
    );
  });
});
