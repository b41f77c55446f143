import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { piecesToLock, planReturn, remainingOf, returnRefund, type ReturnableLine, type ReturnedPieceState } from './returnPlan.js';

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
  returned_piece_ids: [],
  held_piece_ids: [],
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
      { sale_item_id: 'a', line_number: 1, sku_id: 'cheese', quantity: 500, refund: 750, piece_ids: [] },
      { sale_item_id: 'b', line_number: 2, sku_id: 'milk', quantity: 1, refund: 120, piece_ids: [] },
      { sale_item_id: 'c', line_number: 3, sku_id: 'cheese', quantity: 100, refund: 160, piece_ids: [] },
    ]);
    assert.equal(plan.refund_total, 1030);
    assert.deepEqual(plan.stock, [{ sku_id: 'cheese', quantity: 600 }, { sku_id: 'milk', quantity: 1 }]);
    assert.deepEqual(remainingOf(lines, plan.lines), [
      { sku_id: 'cheese', sold: 750, returned: 650, returnable: 100, returnable_piece_ids: [] },
      { sku_id: 'milk', sold: 3, returned: 1, returnable: 2, returnable_piece_ids: [] },
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

  it('a line with an offline shortfall is returned like any other, up to all it sold (it used to be 422: void the sale instead)', () => {
    const short = planReturn([line({ shortfall_quantity: 1 })], [{ sku_id: 'cheese', quantity: 3 }]);
    assert.equal(short.ok, true, JSON.stringify(short));
    if (!short.ok) return;
    assert.deepEqual(short.lines, [{ sale_item_id: 'line-1', line_number: 1, sku_id: 'cheese', quantity: 3, refund: 5, piece_ids: [] }]);
    assert.deepEqual(short.stock, [{ sku_id: 'cheese', quantity: 3 }]);
    assert.deepEqual(remainingOf([line({ shortfall_quantity: 1 })], short.lines), [{ sku_id: 'cheese', sold: 3, returned: 3, returnable: 0, returnable_piece_ids: [] }]);
    assert.deepEqual(planReturn([line({ shortfall_quantity: 1 })], [{ sku_id: 'cheese', quantity: 4 }]), {
      ok: false,
      kind: 'exceeds',
      returnable: [{ sku_id: 'cheese', requested: 4, returnable: 3 }],
    });
  });

  it('remaining: a SKU short on the second of two lines is returnable in full, as planReturn takes it back', () => {
    // an offline sale of 5 + 5 soap synced with 7 in stock: the second line is short 3, the first is not
    const synced = [
      line({ sale_item_id: 'a', line_number: 1, sku_id: 'soap', unit: 'piece', quantity: 5, unit_price: 100, line_total: 500 }),
      line({ sale_item_id: 'b', line_number: 2, sku_id: 'soap', unit: 'piece', quantity: 5, unit_price: 100, line_total: 500, shortfall_quantity: 3 }),
      line({ sale_item_id: 'c', line_number: 3, sku_id: 'salt', unit: 'piece', quantity: 3, unit_price: 40, line_total: 120 }),
    ];
    const salt = planReturn(synced, [{ sku_id: 'salt', quantity: 1 }]);
    assert.equal(salt.ok, true);
    assert.deepEqual(remainingOf(synced, salt.ok ? salt.lines : []), [
      { sku_id: 'soap', sold: 10, returned: 0, returnable: 10, returnable_piece_ids: [] },
      { sku_id: 'salt', sold: 3, returned: 1, returnable: 2, returnable_piece_ids: [] },
    ]);
    const soap = planReturn(synced, [{ sku_id: 'soap', quantity: 8 }]);
    assert.equal(soap.ok, true);
    if (!soap.ok) return;
    assert.deepEqual(
      soap.lines.map((part) => [part.sale_item_id, part.quantity, part.refund]),
      [
        ['a', 5, 500],
        ['b', 3, 300],
      ],
    );
    assert.deepEqual(remainingOf(synced, soap.lines)[0], { sku_id: 'soap', sold: 10, returned: 8, returnable: 2, returnable_piece_ids: [] });
  });
});

describe('planReturn: workshop pieces', () => {
  const saleOpId = 'op-sale';
  // 3 rolls of cloth at 500 per metre (1,001 + 1,000 + 1,500 mm = 3,501 mm → 1,750.5 → 1,751), and 2 milk
  const cloth = line({ sale_item_id: 'a', line_number: 1, sku_id: 'cloth', unit: 'metre', quantity: 3501, unit_price: 500, line_total: 1751, piece_ids: ['p1', 'p2', 'p3'], held_piece_ids: ['p1', 'p2', 'p3'] });
  const milk = line({ sale_item_id: 'b', line_number: 2, sku_id: 'milk', unit: 'piece', quantity: 2, unit_price: 120, line_total: 240 });
  const sold = (id: string, quantity: number): [string, ReturnedPieceState] => [id, { id, quantity, status: 'sold', sold_by_op: saleOpId, deleted_by_op: null }];
  const locked = new Map<string, ReturnedPieceState>([sold('p1', 1001), sold('p2', 1000), sold('p3', 1500)]);

  it('a piece comes back from the line that names it, its quantity, refunded by the cumulative rule; returned piece by piece the line refunds its total', () => {
    let line = cloth;
    let refunded = 0;
    for (const id of ['p2', 'p1', 'p3']) {
      const plan = planReturn([line, milk], [{ sku_id: 'cloth', piece_ids: [id] }], { saleOpId, locked });
      assert.equal(plan.ok, true, JSON.stringify(plan));
      if (!plan.ok) return;
      const quantity = locked.get(id)!.quantity;
      assert.deepEqual(plan.lines, [{ sale_item_id: 'a', line_number: 1, sku_id: 'cloth', quantity, refund: returnRefund(line, line.returned_quantity, quantity), piece_ids: [id] }]);
      assert.deepEqual(plan.stock, [{ sku_id: 'cloth', quantity }]);
      refunded += plan.refund_total;
      line = { ...line, returned_quantity: line.returned_quantity + quantity, returned_piece_ids: [...line.returned_piece_ids, id], held_piece_ids: line.held_piece_ids.filter((held) => held !== id) };
    }
    assert.equal(refunded, cloth.line_total);
    assert.deepEqual(remainingOf([line, milk]), [
      { sku_id: 'cloth', sold: 3501, returned: 3501, returnable: 0, returnable_piece_ids: [] },
      { sku_id: 'milk', sold: 2, returned: 0, returnable: 2, returnable_piece_ids: [] },
    ]);
  });

  it('pieces and quantities in one return; remaining counts the pieces left', () => {
    const plan = planReturn([cloth, milk], [{ sku_id: 'milk', quantity: 1 }, { sku_id: 'cloth', piece_ids: ['p3', 'p1'], quantity: 2501 }], { saleOpId, locked });
    assert.equal(plan.ok, true, JSON.stringify(plan));
    if (!plan.ok) return;
    assert.deepEqual(plan.lines, [
      { sale_item_id: 'a', line_number: 1, sku_id: 'cloth', quantity: 2501, refund: 1251, piece_ids: ['p3', 'p1'] }, // 1,250.5 → 1,251
      { sale_item_id: 'b', line_number: 2, sku_id: 'milk', quantity: 1, refund: 120, piece_ids: [] },
    ]);
    assert.deepEqual(remainingOf([cloth, milk], plan.lines), [
      { sku_id: 'cloth', sold: 3501, returned: 2501, returnable: 1000, returnable_piece_ids: ['p2'] },
      { sku_id: 'milk', sold: 2, returned: 1, returnable: 1, returnable_piece_ids: [] },
    ]);
  });

  it('a line of pieces that synced short: the pieces it sold come back, the missing one is not_sold_by_sale; remaining counts and names the ones it holds', () => {
    // p2 (1,000 mm) was gone when the offline sale synced: the line's shortfall, sold by another operation
    const short = { ...cloth, shortfall_quantity: 1000, held_piece_ids: ['p1', 'p3'] };
    const lockedShort = new Map<string, ReturnedPieceState>([...locked, ['p2', { id: 'p2', quantity: 1000, status: 'sold', sold_by_op: 'op-other', deleted_by_op: null }]]);
    assert.deepEqual(planReturn([short, milk], [{ sku_id: 'cloth', piece_ids: ['p2'] }], { saleOpId, locked: lockedShort }), {
      ok: false,
      kind: 'pieces',
      pieces: [{ id: 'p2', sku_id: 'cloth', path: '/body/items/0/piece_ids/0', reason: 'not_sold_by_sale' }],
    });
    assert.deepEqual(remainingOf([short, milk]), [
      { sku_id: 'cloth', sold: 3501, returned: 0, returnable: 2501, returnable_piece_ids: ['p1', 'p3'] },
      { sku_id: 'milk', sold: 2, returned: 0, returnable: 2, returnable_piece_ids: [] },
    ]);
    const plan = planReturn([short, milk], [{ sku_id: 'cloth', piece_ids: ['p3'] }], { saleOpId, locked: lockedShort });
    assert.equal(plan.ok, true, JSON.stringify(plan));
    if (!plan.ok) return;
    assert.deepEqual(plan.stock, [{ sku_id: 'cloth', quantity: 1500 }]);
    assert.deepEqual(remainingOf([short, milk], plan.lines)[0], { sku_id: 'cloth', sold: 3501, returned: 1500, returnable: 1001, returnable_piece_ids: ['p1'] });
  });

  it('a piece not on the sale, not sold by it now, or taken back already: refused, every such piece listed', () => {
    const returned = { ...cloth, returned_quantity: 1001, returned_piece_ids: ['p1'], held_piece_ids: ['p2', 'p3'] };
    const lockedNow = new Map<string, ReturnedPieceState>([...locked, ['p2', { id: 'p2', quantity: 1000, status: 'in_stock', sold_by_op: null, deleted_by_op: null }]]);
    assert.deepEqual(planReturn([returned, milk], [{ sku_id: 'cloth', piece_ids: ['p3', 'p1', 'p9', 'p2'] }], { saleOpId, locked: lockedNow }), {
      ok: false,
      kind: 'pieces',
      pieces: [
        { id: 'p1', sku_id: 'cloth', path: '/body/items/0/piece_ids/1', reason: 'already_returned' },
        { id: 'p9', sku_id: 'cloth', path: '/body/items/0/piece_ids/2', reason: 'not_sold_by_sale' },
        { id: 'p2', sku_id: 'cloth', path: '/body/items/0/piece_ids/3', reason: 'not_sold_by_sale' },
      ],
    });
    // a piece of the sale named under another SKU is not one the sale sold of that SKU
    const other = planReturn([cloth, line({ ...cloth, sale_item_id: 'c', line_number: 3, sku_id: 'felt', piece_ids: ['p7'] })], [{ sku_id: 'felt', piece_ids: ['p1'] }], { saleOpId, locked });
    assert.equal(other.ok || other.kind, 'pieces');
    assert.deepEqual(piecesToLock([returned, milk], [{ sku_id: 'cloth', piece_ids: ['p3', 'p1', 'p9', 'p2'] }]), ['p2', 'p3']);
  });

  it('bad requests: no pieces for a piece SKU, pieces for another, a piece twice, a quantity that is not their sum', () => {
    const invalid = (items: Parameters<typeof planReturn>[1]) => {
      const plan = planReturn([cloth, milk], items, { saleOpId, locked });
      return plan.ok || plan.kind !== 'invalid' ? plan : plan.errors.map((error) => error.path);
    };
    assert.deepEqual(invalid([{ sku_id: 'cloth', quantity: 1000 }]), ['/body/items/0/piece_ids']);
    assert.deepEqual(invalid([{ sku_id: 'milk', quantity: 1, piece_ids: ['p1'] }]), ['/body/items/0/piece_ids']);
    assert.deepEqual(invalid([{ sku_id: 'milk' }]), ['/body/items/0/quantity']);
    assert.deepEqual(invalid([{ sku_id: 'cloth', piece_ids: ['p1'] }, { sku_id: 'cloth', piece_ids: ['p2', 'p1'] }]), ['/body/items/1/piece_ids/1']);
    assert.deepEqual(invalid([{ sku_id: 'cloth', piece_ids: ['p1'], quantity: 1000 }]), ['/body/items/0/quantity']);
    const many = Array.from({ length: 501 }, (_, index) => `q${index}`);
    assert.deepEqual(invalid([{ sku_id: 'cloth', piece_ids: many.slice(0, 300) }, { sku_id: 'cloth', piece_ids: many.slice(300) }]), ['/body/items']);
  });
});
