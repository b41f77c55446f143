import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planSettlement } from './settlement.js';

const consigned = [
  { sku_id: 'b', unit: 'piece' as const, quantity: 10, unit_price: 250 },
  { sku_id: 'a', unit: 'piece' as const, quantity: 4, unit_price: 1000 },
];

describe('consignment settlement plan', () => {
  it('money owed is sold × unit price; returned goes back to stock', () => {
    const plan = planSettlement(consigned, [
      { sku_id: 'a', sold_quantity: 3, returned_quantity: 1 },
      { sku_id: 'b', sold_quantity: 10, returned_quantity: 0 },
    ]);
    assert.deepEqual(plan, {
      ok: true,
      amount_owed: 3 * 1000 + 10 * 250,
      lines: [
        { sku_id: 'a', sold_quantity: 3, returned_quantity: 1, unit_price: 1000 },
        { sku_id: 'b', sold_quantity: 10, returned_quantity: 0, unit_price: 250 },
      ],
      returned: [{ sku_id: 'a', quantity: 1 }],
    });
  });

  it('kg and metre lines owe what a sale would: base units × price per kg / metre / 1000, each line rounded half up', () => {
    const plan = planSettlement(
      [
        { sku_id: 'rice', unit: 'kg', quantity: 3000, unit_price: 800 },
        { sku_id: 'rope', unit: 'metre', quantity: 1000, unit_price: 10 },
      ],
      [
        { sku_id: 'rice', sold_quantity: 2500, returned_quantity: 500 },
        { sku_id: 'rope', sold_quantity: 333, returned_quantity: 667 },
      ],
    );
    assert.equal(plan.ok && plan.amount_owed, 2500 * 800 / 1000 + 3); // 2,000 + 3.33 → 3
  });

  it('an amount owed above the largest amount is refused', () => {
    const plan = planSettlement([{ sku_id: 'a', unit: 'piece', quantity: 2, unit_price: 9_000_000_000_000 }], [{ sku_id: 'a', sold_quantity: 2, returned_quantity: 0 }]);
    assert.deepEqual(!plan.ok && plan.errors.map((e) => e.message), ['amount owed is too large']);
  });

  it('every unit must be accounted for', () => {
    const plan = planSettlement(consigned, [
      { sku_id: 'a', sold_quantity: 1, returned_quantity: 1 },
      { sku_id: 'b', sold_quantity: 10, returned_quantity: 0 },
    ]);
    assert.equal(plan.ok, false);
    assert.deepEqual(!plan.ok && plan.errors.map((e) => e.path), ['/body/settlement/lines/0']);
  });

  it('refuses unknown, duplicated and missing SKUs', () => {
    const plan = planSettlement(consigned, [
      { sku_id: 'a', sold_quantity: 4, returned_quantity: 0 },
      { sku_id: 'a', sold_quantity: 4, returned_quantity: 0 },
      { sku_id: 'z', sold_quantity: 1, returned_quantity: 0 },
    ]);
    assert.equal(plan.ok, false);
    const messages = !plan.ok ? plan.errors.map((e) => e.message) : [];
    assert.ok(messages.includes('SKU reported twice'));
    assert.ok(messages.includes('SKU is not on this consignment'));
    assert.ok(messages.some((m) => m.includes('SKU b on the consignment is not reported')));
  });
});
