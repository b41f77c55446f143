import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocateShortfall, quantitiesBySku } from './salePlan.js';

describe('sale line rules', () => {
  const line = (sku_id: string, quantity: number) => ({ sku_id, quantity, unit_price: 1 });

  it('sums lines of the same SKU, in first-seen order', () => {
    assert.deepEqual([...quantitiesBySku([line('a', 2), line('b', 5), line('a', 3)])], [['a', 5], ['b', 5]]);
  });

  it('puts an offline shortfall on the last lines of its SKU first', () => {
    const items = [line('a', 3), line('b', 1), line('a', 4)];
    assert.deepEqual(allocateShortfall(items, new Map([['a', 2]])), [0, 0, 2]);
    assert.deepEqual(allocateShortfall(items, new Map([['a', 5]])), [1, 0, 4]);
    assert.deepEqual(allocateShortfall(items, new Map([['a', 7], ['b', 1]])), [3, 1, 4]);
    assert.deepEqual(allocateShortfall(items, new Map()), [0, 0, 0]);
  });
});
