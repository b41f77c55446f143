import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { givenToken } from '../sales/testkit.js';

/**
 * GET /v1/skus?code= (a till scanning a label: the SKU of that exact code, or
 * none) and ?q= (a back office searching: SKUs whose code or name contains
 * the text, any letter case), in the plain list's order (code) with its cursor.
 */
describe('GET /v1/skus?code= and ?q=', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  const ids: Record<string, string> = {};

  const sku = async (code: string, name: string) => {
    const response = await owner.post('/v1/skus', { code, name, unit: 'piece', price: 100 });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    ids[code] = response.body.id as string;
  };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    await sku('MILK-1L', 'Whole milk 1 l');
    await sku('MILK-05', 'Skimmed milk half litre');
    await sku('BUTTER', 'Butter from MILK of the farm');
    await sku('CHEESE', 'Gouda');
    await sku('SALE%50', 'Promo 100_percent off');
    await sku('Ünïcode', 'Crème brûlée');
    for (let i = 0; i < 7; i++) await sku(`JAM-${i}`, `Strawberry jam no. ${i}`);
    // Another tenant's milk is never found.
    const stranger = (await t.newTenant()).owner;
    assert.equal((await stranger.post('/v1/skus', { code: 'MILK-2L', name: 'Milk 2 l', unit: 'piece', price: 1 })).status, 201);
  });
  after(() => t.close());

  /** Every page from the first; the codes in order. */
  async function walk(query: string, client = owner): Promise<{ codes: string[]; pages: ApiResponse[] }> {
    const codes: string[] = [];
    const pages: ApiResponse[] = [];
    let cursor: string | null = null;
    do {
      const page: ApiResponse = await client.get(`/v1/skus?${[query, cursor === null ? '' : `cursor=${cursor}`].filter(Boolean).join('&')}`);
      assert.equal(page.status, 200, `${query}: ${JSON.stringify(page.body)}`);
      pages.push(page);
      codes.push(...(page.body.items as Array<{ code: string }>).map((item) => item.code));
      cursor = page.body.next_cursor;
      assert.ok(pages.length <= 50, 'the walk ends');
    } while (cursor !== null);
    return { codes, pages };
  }

  it('?code= is the SKU of exactly that code as GET /v1/skus/{id} answers it, or an empty page; the code is read in NFC like a stored one', async () => {
    const found = await owner.get('/v1/skus?code=MILK-1L');
    assert.equal(found.status, 200, JSON.stringify(found.body));
    assert.deepEqual(found.body, { items: [(await owner.get(`/v1/skus/${ids['MILK-1L']}`)).body], next_cursor: null });
    // Exact: not a part of it, not another letter case, not another tenant's
    for (const code of ['MILK', 'milk-1l', 'MILK-2L', 'MILK-1L0']) assert.deepEqual((await owner.get(`/v1/skus?code=${encodeURIComponent(code)}`)).body, { items: [], next_cursor: null }, code);
    // % and _ are letters of a code, not wildcards
    assert.deepEqual((await walk(`code=${encodeURIComponent('SALE%50')}`)).codes, ['SALE%50']);
    assert.deepEqual((await walk(`code=${encodeURIComponent('SALE_50')}`)).codes, []);
    // 'Ünïcode' typed with combining marks
    assert.deepEqual((await walk(`code=${encodeURIComponent('U\u0308ni\u0308code')}`)).codes, ['Ünïcode']);
  });

  it('?q= lists the SKUs whose code or name contains the text in any letter case, by code, across pages; % and _ are plain characters', async () => {
    assert.deepEqual((await walk('q=milk')).codes, ['BUTTER', 'MILK-05', 'MILK-1L']);
    assert.deepEqual((await walk('q=MiLk&limit=1')).codes, ['BUTTER', 'MILK-05', 'MILK-1L']);
    assert.deepEqual((await walk('q=gou')).codes, ['CHEESE']);
    assert.deepEqual((await walk(`q=${encodeURIComponent('CRÈME')}`)).codes, ['Ünïcode']);
    assert.deepEqual((await walk(`q=${encodeURIComponent('e%5')}`)).codes, ['SALE%50']);
    assert.deepEqual((await walk(`q=${encodeURIComponent('0_p')}`)).codes, ['SALE%50']);
    assert.deepEqual((await walk(`q=${encodeURIComponent('e_5')}`)).codes, []);
    assert.deepEqual((await walk(`q=${encodeURIComponent('l%e')}`)).codes, []);
    assert.deepEqual((await walk('q=nothing-like-it')).codes, []);
    const jams = await walk('q=jam&limit=3');
    assert.deepEqual(jams.codes, Array.from({ length: 7 }, (_, i) => `JAM-${i}`));
    assert.deepEqual(jams.pages.map((page) => page.body.items.length), [3, 3, 1]);
    // With ?code=: both hold
    assert.deepEqual((await walk('q=jam&code=JAM-3')).codes, ['JAM-3']);
    assert.deepEqual((await walk('q=milk&code=JAM-3')).codes, []);
    // The plain list is unchanged, and its cursor is the same kind
    const plain = await walk('limit=4');
    assert.equal(plain.codes.length, 13);
    assert.deepEqual(plain.codes, [...plain.codes].sort());
  });

  it("skus_matching, the search run as its owner (past row-level security), answers the SKUs of the transaction's tenant only, and none outside a tenant", async () => {
    const outside = await t.appPool.query(`SELECT count(*)::int AS n FROM skus_matching('%milk%', NULL)`);
    assert.equal(outside.rows[0].n, 0);
    const client = await t.appPool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
      const inside = await client.query(`SELECT code FROM skus_matching('%milk%', NULL) ORDER BY code`);
      assert.deepEqual(inside.rows.map((row: { code: string }) => row.code), ['BUTTER', 'MILK-05', 'MILK-1L']);
      const after = await client.query(`SELECT code FROM skus_matching('%milk%', 'MILK-05') ORDER BY code`);
      assert.deepEqual(after.rows.map((row: { code: string }) => row.code), ['MILK-1L']);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('roles that read SKUs (a cashier at a till too) look them up', async () => {
    const cashier = await givenToken(t, owner, 'cashier');
    assert.deepEqual((await walk('code=CHEESE', cashier)).codes, ['CHEESE']);
    assert.deepEqual((await walk('q=cheese', cashier)).codes, ['CHEESE']);
  });

  it('bad values are 400 problem+json at their parameter: an empty or too short or too long q, q of only spaces, an empty code, a code no SKU could have', async () => {
    const cases: Array<[string, string]> = [
      ['q=', '/querystring/q'],
      ['q=ab', '/querystring/q'],
      [`q=${'x'.repeat(201)}`, '/querystring/q'],
      [`q=${encodeURIComponent('    ')}`, '/querystring/q'],
      ['code=', '/querystring/code'],
      [`code=${'x'.repeat(101)}`, '/querystring/code'],
      [`code=${encodeURIComponent('MILK ')}`, '/querystring/code'],
      ['name=milk', '/querystring/name'],
    ];
    for (const [query, path] of cases) {
      const response = await owner.get(`/v1/skus?${query}`);
      assert.equal(response.status, 400, `${query}: ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/, query);
      assert.ok((response.body.errors as Array<{ path: string }>).some((error) => error.path === path), `${query}: ${JSON.stringify(response.body.errors)}`);
    }
    assert.equal((await owner.get(`/v1/skus?q=${'x'.repeat(200)}`)).status, 200);
  });
});
