import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planPurchaseReturn, purchaseRemainingOf, purchaseReturnCredit, type ReturnablePurchaseLine } from './purchaseReturnPlan.js';

const line = (overrides: Partial<ReturnablePurchaseLine> = {}): ReturnablePurchaseLine => ({
  line_number: 1,
  sku_id: 'cheese',
  unit: 'kg',
  quantity: 3,
  unit_cost: 1500,
  line_total: 5, // 3 g at 1,500 per kg = 4.5 → 5
  returned_quantity: 0,
  ...overrides,
});

describe('purchaseReturnCredit: a purchase line\'s returns credit by its own rounding, cumulatively', () => {
  it('sending a line back gram by gram credits exactly its line total (each part rounded alone would credit 6 for a line of 5)', () => {
    const cheese = line();
    const parts = [purchaseReturnCredit(cheese, 0, 1), purchaseReturnCredit(cheese, 1, 1), purchaseReturnCredit(cheese, 2, 1)];
    assert.deepEqual(parts, [2, 1, 2]);
    assert.equal(parts.reduce((a, b) => a + b, 0), cheese.line_total);
  });
  it('any split of any line adds up to its line total', () => {
    for (const [unit, quantity, cost] of [['kg', 600, 999], ['metre', 1234, 333], ['piece', 7, 120], ['kg', 1, 1], ['kg', 5, 0]] as const) {
      const bought = line({ unit, quantity, unit_cost: cost, line_total: unit === 'piece' ? quantity * cost : Math.floor((quantity * cost * 2 + 1000) / 2000) });
      for (const step of [1, 7, 200, quantity]) {
        let before = 0;
        let credited = 0;
        while (before < quantity) {
          const take = Math.min(step, quantity - before);
          credited += purchaseReturnCredit(bought, before, take);
          before += take;
        }
        assert.equal(credited, bought.line_total, `${unit} ${quantity} at ${cost} in steps of ${step}`);
      }
    }
  });
});

describe('planPurchaseReturn', () => {
  const lines = [
    line({ line_number: 1, sku_id: 'cheese', quantity: 500, unit_cost: 1500, line_total: 750 }),
    line({ line_number: 2, sku_id: 'milk', unit: 'piece', quantity: 3, unit_cost: 120, line_total: 360 }),
    line({ line_number: 3, sku_id: 'cheese', quantity: 250, unit_cost: 1600, line_total: 400, returned_quantity: 50 }),
  ];

  it('sums a SKU\'s request lines and takes them from its purchase lines in line order, each at its line\'s cost', () => {
    const plan = planPurchaseReturn(lines, [{ sku_id: 'cheese', quantity: 400 }, { sku_id: 'milk', quantity: 1 }, { sku_id: 'cheese', quantity: 200 }]);
    assert.equal(plan.ok, true);
    if (!plan.ok) return;
    assert.deepEqual(plan.lines, [
      { line_number: 1, sku_id: 'cheese', quantity: 500, unit_cost: 1500, line_total: 750 },
      { line_number: 2, sku_id: 'milk', quantity: 1, unit_cost: 120, line_total: 120 },
      { line_number: 3, sku_id: 'cheese', quantity: 100, unit_cost: 1600, line_total: 160 },
    ]);
    assert.equal(plan.credit_total, 1030);
    assert.deepEqual(plan.stock, [{ sku_id: 'cheese', quantity: 600 }, { sku_id: 'milk', quantity: 1 }]);
    assert.deepEqual(purchaseRemainingOf(lines, plan.lines), [
      { sku_id: 'cheese', purchased: 750, returned: 650, returnable: 100 },
      { sku_id: 'milk', purchased: 3, returned: 1, returnable: 2 },
    ]);
  });

  it('more than bought minus sent back before: exceeds, with every requested SKU\'s returnable quantity', () => {
    assert.deepEqual(planPurchaseReturn(lines, [{ sku_id: 'milk', quantity: 1 }, { sku_id: 'cheese', quantity: 701 }]), {
      ok: false,
      kind: 'exceeds',
      returnable: [
        { sku_id: 'milk', requested: 1, returnable: 3 },
        { sku_id: 'cheese', requested: 701, returnable: 700 },
      ],
    });
  });

  it('a SKU the purchase did not buy is invalid at its request line', () => {
    assert.deepEqual(planPurchaseReturn(lines, [{ sku_id: 'milk', quantity: 1 }, { sku_id: 'bread', quantity: 1 }]), {
      ok: false,
      kind: 'invalid',
      errors: [{ path: '/body/items/1/sku_id', message: 'is not a SKU this purchase bought' }],
    });
  });

  it('a line bought at cost 0 is sent back for a credit of 0', () => {
    const plan = planPurchaseReturn([line({ unit: 'piece', quantity: 4, unit_cost: 0, line_total: 0 })], [{ sku_id: 'cheese', quantity: 4 }]);
    assert.equal(plan.ok && plan.credit_total, 0);
  });
});
