import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SkuCatalogCache } from './saleRows.js';

const sku = (id: string) => ({ id, unit: 'piece' as const, tracks_pieces: false });

describe('SkuCatalogCache', () => {
  it('reads only unknown SKUs and remembers what it read', () => {
    const cache = new SkuCatalogCache(10);
    assert.deepEqual(cache.missing('t', ['a', 'b']), ['a', 'b']);
    assert.deepEqual([...cache.resolve('t', ['a', 'b'], [sku('a')]).keys()], ['a'], 'b does not exist');
    assert.deepEqual(cache.missing('t', ['a', 'b']), ['b']);
    assert.deepEqual(cache.missing('other tenant', ['a']), ['a'], 'per tenant');
  });

  it('when full, a SKU known when `missing` was asked is still resolved (the cache empties after resolving)', () => {
    const cache = new SkuCatalogCache(1);
    cache.resolve('t', ['a'], [sku('a')]);
    // a is known, b is not: only b is read; making room for b must not lose a
    assert.deepEqual(cache.missing('t', ['a', 'b']), ['b']);
    const resolved = cache.resolve('t', ['a', 'b'], [sku('b')]);
    assert.deepEqual([...resolved.keys()], ['a', 'b']);
    // a was dropped to make room: it is read again next time
    assert.deepEqual(cache.missing('t', ['a', 'b']), ['a']);
  });
});
