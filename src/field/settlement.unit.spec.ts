import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planSettlement } from './settlement.js';

const consigned = [
  { sku_id: 'b', quantity: 10, unit_price: 250 },
  { sku_id: 'a', quantity: 4, unit_price: 1000 },
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
