import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * Codes name stores, SKUs and parties for people (a shelf label, a supplier's
 * list): two spellings that look the same must not be two records, and a code
 * with invisible characters at its ends or inside it is refused, not stored.
 */
describe('codes of stores, SKUs and parties', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const rows = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM stores WHERE tenant_id = $1)::int AS stores,
                (SELECT count(*) FROM skus WHERE tenant_id = $1)::int AS skus,
                (SELECT count(*) FROM parties WHERE tenant_id = $1)::int AS parties,
                (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations`,
        [tenantId],
      )
    ).rows[0];

  const creations: Array<[string, number, (code: string) => Promise<{ status: number; body: any }>]> = [
    ['store', 50, (code) => owner.post('/v1/stores', { code, name: 'Store' })],
    ['SKU', 100, (code) => owner.post('/v1/skus', { code, name: 'Thing', unit: 'piece', price: 100 })],
    ['party', 100, (code) => owner.post('/v1/parties', { kind: 'supplier', code, name: 'Mill' })],
  ];

  for (const [what, maxLength, create] of creations) {
    it(`a ${what} code in another Unicode normal form is the same code: 409 already_exists, one row`, async () => {
      const composed = `CAF\u00c9-${what}`; // É as one code point (NFC)
      const decomposed = `CAFE\u0301-${what}`; // E + combining acute (NFD): looks the same
      const first = await create(decomposed);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      assert.equal(first.body.code, composed, 'the code is kept in its composed (NFC) form');
      const before = await rows();
      const second = await create(composed);
      assert.equal(second.status, 409, JSON.stringify(second.body));
      assert.equal(second.body.code, 'already_exists');
      assert.deepEqual(await rows(), before, 'nothing written');
    });

    it(`a ${what} code with whitespace at its ends or invisible or control characters is 400 at /body/code, nothing written`, async () => {
      const before = await rows();
      for (const code of [' MAIN', 'MAIN ', '\u00a0MAIN', 'MAIN\t', '   ', 'MA\u200bIN', 'MA\nIN', '\ufeffMAIN', 'MA\u202eIN']) {
        const response = await create(code);
        assert.equal(response.status, 400, `${JSON.stringify(code)}: ${JSON.stringify(response.body)}`);
        assert.equal(response.body.code, 'validation_failed');
        assert.ok(
          response.body.errors.some((error: { path: string }) => error.path === '/body/code'),
          JSON.stringify(response.body.errors),
        );
      }
      // A code NFC makes longer than the field allows (U+0958 is two code
      // points in NFC) is refused at the field too, not by the table (500).
      const longInNfc = await create('\u0958'.repeat(maxLength));
      assert.equal(longInNfc.status, 400, JSON.stringify(longInNfc.body));
      assert.ok(longInNfc.body.errors.some((error: { path: string }) => error.path === '/body/code'), JSON.stringify(longInNfc.body.errors));
      assert.deepEqual(await rows(), before, 'nothing written');
      // A space inside a code is fine.
      assert.equal((await create(`MAIN STREET ${what}`)).status, 201);
    });
  }
});
