import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';

/**
 * storekeep_integrity_open_findings is read from the review queue at scrape
 * time. When that read fails (the database unreachable, the function
 * refused), /metrics still answers — without the gauge's values, not with the
 * last scrape's counts passed off as current.
 */
describe('the API\'s open-findings gauge when the review queue cannot be read', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => {
    await t.admin.query('GRANT EXECUTE ON FUNCTION open_integrity_findings() TO storekeep_app').catch(() => undefined);
    await t.close();
  });

  const openFindingLines = async () =>
    (await (await fetch(`${t.baseUrl}/metrics`)).text()).split('\n').filter((line) => line.startsWith('storekeep_integrity_open_findings{'));

  it('a failed read drops the values instead of serving the previous scrape\'s', async () => {
    const { tenantId } = await t.newTenant();
    const opId = randomUUID();
    await t.admin.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'test.seed', 'test', 'c')`, [tenantId, opId]);
    await t.admin.query(`INSERT INTO events (tenant_id, op_id, type, actor, correlation_id) VALUES ($1, $2, 'test.seed', 'test', 'c')`, [tenantId, opId]);
    await t.admin.query(
      `INSERT INTO review_items (tenant_id, id, kind, subject_type, subject_id, detail, op_id, dedupe_key)
       VALUES ($1, $2, 'integrity_finding', 'stock_not_negative', 's/k', '{}', $3, 'integrity:stock_not_negative:s/k')`,
      [tenantId, randomUUID(), opId],
    );
    assert.deepEqual(await openFindingLines(), ['storekeep_integrity_open_findings{check="stock_not_negative"} 1']);
    // The read now fails (as it does with the database unreachable): the metrics page still answers.
    await t.admin.query('REVOKE EXECUTE ON FUNCTION open_integrity_findings() FROM storekeep_app');
    const response = await fetch(`${t.baseUrl}/metrics`);
    assert.equal(response.status, 200);
    const lines = (await response.text()).split('\n').filter((line) => line.startsWith('storekeep_integrity_open_findings{'));
    assert.deepEqual(lines, [], 'no stale counts from the previous scrape');
    await t.admin.query('GRANT EXECUTE ON FUNCTION open_integrity_findings() TO storekeep_app');
    assert.deepEqual(await openFindingLines(), ['storekeep_integrity_open_findings{check="stock_not_negative"} 1']);
  });
});
