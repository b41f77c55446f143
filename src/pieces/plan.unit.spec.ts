import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cutOutputKind, kindFitsUnit, planCombine, planCut } from './plan.js';

describe('cut plan', () => {
  it('cuts the given lengths; the rest is a remainder', () => {
    assert.deepEqual(planCut(10_000, [2500, 3000]), { ok: true, parts: [2500, 3000], remainder: 4500 });
  });
  it('parts that use the whole piece leave no remainder', () => {
    assert.deepEqual(planCut(6000, [3000, 3000]), { ok: true, parts: [3000, 3000], remainder: 0 });
  });
  it('parts must fit', () => {
    const plan = planCut(5000, [3000, 2001]);
    assert.equal(plan.ok, false);
    assert.match(!plan.ok ? plan.reason : '', /need 5001 but the piece has 5000/);
  });
  it('parts must be positive whole numbers, at least one', () => {
    assert.equal(planCut(5000, []).ok, false);
    assert.equal(planCut(5000, [0]).ok, false);
    assert.equal(planCut(5000, [-1]).ok, false);
    assert.equal(planCut(5000, [1.5]).ok, false);
  });
  it('output kinds: rolls and cut pieces give cut pieces, spare pieces split into spare pieces, bundles are not cut', () => {
    assert.equal(cutOutputKind('roll'), 'cut');
    assert.equal(cutOutputKind('cut'), 'cut');
    assert.equal(cutOutputKind('spare'), 'spare');
    assert.equal(cutOutputKind('bundle'), null);
  });
});

describe('combine plan', () => {
  it('makes N bundles of a size; the rest is one remainder', () => {
    assert.deepEqual(planCombine([7, 5, 9], 5, 4), { ok: true, bundles: [5, 5, 5, 5], remainder: 1 });
  });
  it('an exact fit leaves no remainder', () => {
    assert.deepEqual(planCombine([6, 4], 5, 2), { ok: true, bundles: [5, 5], remainder: 0 });
  });
  it('refuses bundles that do not fit, and empty or zero sizes', () => {
    assert.equal(planCombine([6, 4], 5, 3).ok, false);
    assert.equal(planCombine([], 5, 1).ok, false);
    assert.equal(planCombine([6], 0, 1).ok, false);
    assert.equal(planCombine([6], 1, 0).ok, false);
  });
  it('kinds fit units: metre → roll/cut, piece → spare/bundle, kg → none', () => {
    assert.equal(kindFitsUnit('roll', 'metre'), true);
    assert.equal(kindFitsUnit('spare', 'metre'), false);
    assert.equal(kindFitsUnit('bundle', 'piece'), true);
    assert.equal(kindFitsUnit('cut', 'piece'), false);
    assert.equal(kindFitsUnit('roll', 'kg'), false);
  });
});
