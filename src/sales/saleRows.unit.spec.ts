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

describe('SkuCatalogCache shared by concurrent lookups', () => {
  it("a SKU known when one tenant's lookup asked `missing` is still resolved when another tenant's lookup emptied the cache meanwhile", () => {
    // loadSaleStates asks `missing`, awaits its statement, then `resolve`s;
    // other lanes (other tenants) run their own lookups on the same cache
    // in between, and one of them may fill it past its limit.
    const cache = new SkuCatalogCache(2);
    cache.resolve('tenant A', ['a'], [sku('a')]);
    assert.deepEqual(cache.missing('tenant A', ['a']), [], 'a is known: tenant A does not read it');
    // meanwhile tenant B reads two new SKUs: the cache is full and is emptied to make room
    assert.deepEqual(cache.missing('tenant B', ['x', 'y']), ['x', 'y']);
    assert.deepEqual([...cache.resolve('tenant B', ['x', 'y'], [sku('x'), sku('y')]).keys()], ['x', 'y']);
    // tenant A's statement read nothing: a must still be resolved, not reported as an unknown SKU (a 400 for a real SKU)
    assert.deepEqual([...cache.resolve('tenant A', ['a'], []).keys()], ['a']);
  });
});
