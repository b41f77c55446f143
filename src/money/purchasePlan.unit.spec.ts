import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_AMOUNT } from '../sales/lineTotal.js';
import { purchaseLines, purchaseShape } from './purchasePlan.js';

const SKU = '00000000-0000-4000-8000-000000000001';
const SUPPLIER = '00000000-0000-4000-8000-000000000002';

describe('purchaseShape: a supplier and a cost on every line, or neither', () => {
  it('neither: a plain receipt', () => {
    assert.deepEqual(purchaseShape({ items: [{ sku_id: SKU, quantity: 1 }] }), { ok: true, purchase: false });
  });

  it('a supplier and every line costed (0 included): a purchase', () => {
    assert.deepEqual(purchaseShape({ supplier_id: SUPPLIER, items: [{ sku_id: SKU, quantity: 1, unit_cost: 0 }, { sku_id: SKU, quantity: 2, unit_cost: 5 }] }), { ok: true, purchase: true });
  });

  it('a supplier with lines lacking a cost: each such line, at its unit_cost', () => {
    const shape = purchaseShape({ supplier_id: SUPPLIER, items: [{ sku_id: SKU, quantity: 1 }, { sku_id: SKU, quantity: 1, unit_cost: 3 }, { sku_id: SKU, quantity: 1 }] });
    assert.equal(shape.ok, false);
    assert.deepEqual(!shape.ok && shape.errors.map((error) => error.path), ['/body/items/0/unit_cost', '/body/items/2/unit_cost']);
  });

  it('costs without a supplier: at supplier_id', () => {
    const shape = purchaseShape({ items: [{ sku_id: SKU, quantity: 1, unit_cost: 3 }] });
    assert.deepEqual(!shape.ok && shape.errors.map((error) => error.path), ['/body/supplier_id']);
  });
});

describe('purchaseLines: a sale line\'s rule', () => {
  it('pieces exactly; grams and millimetres per 1000, rounded half up, each line on its own; the total their sum', () => {
    const planned = purchaseLines([
      { sku_id: SKU, quantity: 1234, unit_cost: 299, unit: 'kg' }, // 368.966 → 369
      { sku_id: SKU, quantity: 500, unit_cost: 1, unit: 'kg' }, // 0.5 → 1
      { sku_id: SKU, quantity: 499, unit_cost: 1, unit: 'metre' }, // 0.499 → 0
      { sku_id: SKU, quantity: 3, unit_cost: 250, unit: 'piece' }, // 750
    ]);
    assert.ok(planned.ok);
    assert.deepEqual(planned.lines.map((line) => [line.line_number, line.line_total]), [[1, 369], [2, 1], [3, 0], [4, 750]]);
    assert.equal(planned.total, 1120);
  });

  it('a line or a total above the largest amount is an error at its path, naming the purchase', () => {
    const line = purchaseLines([{ sku_id: SKU, quantity: 2, unit_cost: MAX_AMOUNT, unit: 'piece' }]);
    assert.deepEqual(!line.ok && line.errors.map((error) => error.path), ['/body/items/0']);
    const total = purchaseLines([
      { sku_id: SKU, quantity: 1, unit_cost: MAX_AMOUNT, unit: 'piece' },
      { sku_id: SKU, quantity: 1, unit_cost: 1, unit: 'piece' },
    ]);
    assert.equal(!total.ok && total.errors[0]!.path, '/body/items');
    assert.match(!total.ok ? total.errors[0]!.message : '', /^purchase total/);
    assert.ok(purchaseLines([{ sku_id: SKU, quantity: 1, unit_cost: MAX_AMOUNT, unit: 'piece' }]).ok, 'the largest amount itself is allowed');
  });
});
