import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';

describe('GET /v1/stores/{store_id}/stock: every SKU at once, or paged', () => {
  let t: TestApp;
  let owner: ApiClient;
  let storeId: string;
  let skus: string[];

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    storeId = await givenStore(owner, 'SL');
    skus = [];
    for (let i = 0; i < 7; i++) skus.push(await givenSku(owner, `SL-${i}`, 'piece'));
    await givenStock(owner, storeId, skus.map((sku, i) => ({ sku_id: sku, quantity: i + 1 })));
    skus.sort();
  });
  after(() => t.close());

  async function walk(query: string): Promise<{ pages: number; ids: string[] }> {
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response: { status: number; body: { items: Array<{ sku_id: string }>; next_cursor: string | null } } = await owner.get(
        `/v1/stores/${storeId}/stock?${query}${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(response.status, 200, JSON.stringify(response.body));
      ids.push(...response.body.items.map((item) => item.sku_id));
      cursor = response.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 20);
    return { pages, ids };
  }

  it('without limit or cursor: every SKU in SKU order, next_cursor null (as before paging)', async () => {
    const response = await owner.get(`/v1/stores/${storeId}/stock`);
    assert.equal(response.status, 200);
    assert.deepEqual(response.body.items.map((item: { sku_id: string }) => item.sku_id), skus);
    assert.equal(response.body.next_cursor, null);
  });

  it('with a limit: pages in SKU order, every SKU exactly once, the last page ends the list — now and as of a moment', async () => {
    assert.deepEqual(await walk('limit=3'), { pages: 3, ids: skus });
    assert.deepEqual(await walk(`limit=2&as_of=${encodeURIComponent(new Date().toISOString())}`), { pages: 4, ids: skus });
    assert.deepEqual(await walk('limit=7'), { pages: 1, ids: skus });
  });

  it('a limit outside 1–500 or a cursor not made by this list is 400', async () => {
    for (const query of ['limit=0', 'limit=501', 'cursor=bm90LWEtY3Vyc29y', `cursor=${Buffer.from(JSON.stringify({ sku_id: "x' OR 1=1" })).toString('base64url')}`]) {
      const response = await owner.get(`/v1/stores/${storeId}/stock?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal(response.body.code, 'validation_failed');
    }
  });
});
