import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planReturn, remainingOf, returnRefund, type ReturnableLine } from './returnPlan.js';

const line = (overrides: Partial<ReturnableLine> = {}): ReturnableLine => ({
  sale_item_id: 'line-1',
  line_number: 1,
  sku_id: 'cheese',
  unit: 'kg',
  quantity: 3,
  unit_price: 1500,
  line_total: 5, // 3 g at 1,500 per kg = 4.5 → 5
  shortfall_quantity: 0,
  piece_ids: [],
  returned_quantity: 0,
  ...overrides,
});

describe('returnRefund: a line\'s returns refund by its own rounding, cumulatively', () => {
  it('returning a line gram by gram refunds exactly its line total (each part rounded alone would refund 6 for a line of 5)', () => {
    const cheese = line();
    const parts = [returnRefund(cheese, 0, 1), returnRefund(cheese, 1, 1), returnRefund(cheese, 2, 1)];
    assert.deepEqual(parts, [2, 1, 2]); // 1.5 → 2; 3.0 − 2 = 1; 4.5 → 5 − 3 = 2
    assert.equal(parts.reduce((a, b) => a + b, 0), cheese.line_total);
  });
  it('any split of any line adds up to its line total', () => {
    for (const [unit, quantity, price] of [['kg', 600, 999], ['metre', 1234, 333], ['piece', 7, 120], ['kg', 1, 1]] as const) {
      const sold = line({ unit, quantity, unit_price: price, line_total: unit === 'piece' ? quantity * price : Math.floor((quantity * price * 2 + 1000) / 2000) });
      for (const step of [1, 7, 200, quantity]) {
        let before = 0;
        let refunded = 0;
        while (before < quantity) {
          const take = Math.min(step, quantity - before);
          refunded += returnRefund(sold, before, take);
          before += take;
        }
        assert.equal(refunded, sold.line_total, `${unit} ${quantity} at ${price} in steps of ${step}`);
      }
    }
  });
  it('200 g of a 600 g line at 999 per kg: 199.8 → 200', () => {
    assert.equal(returnRefund(line({ quantity: 600, unit_price: 999, line_total: 599 }), 0, 200), 200);
  });
});

describe('planReturn', () => {
  const lines = [
    line({ sale_item_id: 'a', line_number: 1, sku_id: 'cheese', quantity: 500, unit_price: 1500, line_total: 750 }),
    line({ sale_item_id: 'b', line_number: 2, sku_id: 'milk', unit: 'piece', quantity: 3, unit_price: 120, line_total: 360 }),
    line({ sale_item_id: 'c', line_number: 3, sku_id: 'cheese', quantity: 250, unit_price: 1600, line_total: 400, returned_quantity: 50 }),
  ];

  it('sums a SKU\'s request lines and takes them from its sale lines in line order', () => {
    const plan = planReturn(lines, [{ sku_id: 'cheese', quantity: 400 }, { sku_id: 'milk', quantity: 1 }, { sku_id: 'cheese', quantity: 200 }]);
    assert.equal(plan.ok, true);
    if (!plan.ok) return;
    assert.deepEqual(plan.lines, [
      { sale_item_id: 'a', line_number: 1, sku_id: 'cheese', quantity: 500, refund: 750 },
      { sale_item_id: 'b', line_number: 2, sku_id: 'milk', quantity: 1, refund: 120 },
      { sale_item_id: 'c', line_number: 3, sku_id: 'cheese', quantity: 100, refund: 160 },
    ]);
    assert.equal(plan.refund_total, 1030);
    assert.deepEqual(plan.stock, [{ sku_id: 'cheese', quantity: 600 }, { sku_id: 'milk', quantity: 1 }]);
    assert.deepEqual(remainingOf(lines, plan.lines), [
      { sku_id: 'cheese', sold: 750, returned: 650, returnable: 100 },
      { sku_id: 'milk', sold: 3, returned: 1, returnable: 2 },
    ]);
  });

  it('more than sold minus returned before: exceeds, with every requested SKU\'s returnable quantity', () => {
    assert.deepEqual(planReturn(lines, [{ sku_id: 'milk', quantity: 1 }, { sku_id: 'cheese', quantity: 701 }]), {
      ok: false,
      kind: 'exceeds',
      returnable: [
        { sku_id: 'milk', requested: 1, returnable: 3 },
        { sku_id: 'cheese', requested: 701, returnable: 700 },
      ],
    });
  });

  it('a SKU the sale did not sell is invalid at its request line', () => {
    assert.deepEqual(planReturn(lines, [{ sku_id: 'milk', quantity: 1 }, { sku_id: 'bread', quantity: 1 }]), {
      ok: false,
      kind: 'invalid',
      errors: [{ path: '/body/items/1/sku_id', message: 'is not a SKU this sale sold' }],
    });
  });

  it('a line of workshop pieces or with an offline shortfall is not returned in part', () => {
    const pieces = planReturn([line({ piece_ids: ['p1'] })], [{ sku_id: 'cheese', quantity: 1 }]);
    assert.equal(pieces.ok || pieces.kind, 'unsupported');
    const short = planReturn([line({ shortfall_quantity: 1 })], [{ sku_id: 'cheese', quantity: 1 }]);
    assert.equal(short.ok || short.kind, 'unsupported');
    assert.deepEqual(remainingOf([line({ piece_ids: ['p1'] })]), [{ sku_id: 'cheese', sold: 3, returned: 0, returnable: 0 }]);
  });

  it('remaining: a SKU with a line of pieces or a shortfall is returnable 0 on every line of it, as planReturn refuses it whole', () => {
    // an offline sale of 5 + 5 soap synced with 7 in stock: the second line is short 3, the first is not
    const synced = [
      line({ sale_item_id: 'a', line_number: 1, sku_id: 'soap', unit: 'piece', quantity: 5, unit_price: 100, line_total: 500 }),
      line({ sale_item_id: 'b', line_number: 2, sku_id: 'soap', unit: 'piece', quantity: 5, unit_price: 100, line_total: 500, shortfall_quantity: 3 }),
      line({ sale_item_id: 'c', line_number: 3, sku_id: 'salt', unit: 'piece', quantity: 3, unit_price: 40, line_total: 120 }),
    ];
    const soap = planReturn(synced, [{ sku_id: 'soap', quantity: 1 }]);
    assert.equal(soap.ok || soap.kind, 'unsupported');
    const salt = planReturn(synced, [{ sku_id: 'salt', quantity: 1 }]);
    assert.equal(salt.ok, true);
    assert.deepEqual(remainingOf(synced, salt.ok ? salt.lines : []), [
      { sku_id: 'soap', sold: 10, returned: 0, returnable: 0 },
      { sku_id: 'salt', sold: 3, returned: 1, returnable: 2 },
    ]);
  });
});
