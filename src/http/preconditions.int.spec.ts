import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * An action on a record that does not exist (or is outside the caller's
 * stores) is 404 whatever its If-Match says: the precondition is about a
 * record, and there is none to hold it against.
 */
describe('If-Match on a record that is not there: 404 first', () => {
  let t: TestApp;
  let owner: ApiClient;
  const missing = '00000000-0000-4000-8000-00000000beef';

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
  });
  after(() => t.close());

  it('settlement decisions, transfer and order actions and piece cuts answer 404 before 428 or 412', async () => {
    const wrong: string[] = [];
    const cases: Array<[string, Record<string, string>]> = [
      [`/v1/settlements/${missing}/approve`, {}],
      [`/v1/settlements/${missing}/reject`, { 'if-match': '*' }],
      [`/v1/settlements/${missing}/approve`, { 'if-match': 'yesterday' }],
      [`/v1/transfers/${missing}/approve`, { 'if-match': 'yesterday' }],
      [`/v1/transfers/${missing}/cancel`, { 'if-match': '"7"' }],
      [`/v1/orders/${missing}/cancel`, { 'if-match': 'yesterday' }],
      ['/v1/pieces/cut', { 'if-match': 'yesterday' }],
    ];
    for (const [path, headers] of cases) {
      const body = path === '/v1/pieces/cut' ? { piece_id: missing, parts: [100] } : undefined;
      const response = await owner.post(path, body, { headers });
      if (response.status !== 404 || response.body.code !== 'not_found') wrong.push(`${path.replace(missing, '{missing}')} ${JSON.stringify(headers)} → ${response.status} ${response.body.code}`);
    }
    assert.deepEqual(wrong, []);
  });

  it('If-Match is a list of any length on every action that takes it (a long list is read, not refused for its length)', async () => {
    const list = Array.from({ length: 40 }, (_, i) => `"${i + 1}"`).join(', ');
    assert.ok(list.length > 100);
    const wrong: string[] = [];
    const cases: Array<[string, unknown]> = [
      [`/v1/settlements/${missing}/approve`, undefined],
      [`/v1/transfers/${missing}/approve`, undefined],
      [`/v1/orders/${missing}/cancel`, undefined],
      ['/v1/pieces/cut', { piece_id: missing, parts: [100] }],
    ];
    for (const [path, body] of cases) {
      const response = await owner.post(path, body, { headers: { 'if-match': list } });
      if (response.status !== 404) wrong.push(`${path.replace(missing, '{missing}')} → ${response.status} ${JSON.stringify(response.body.errors ?? response.body.code)}`);
    }
    assert.deepEqual(wrong, []);
  });
});
