import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { runCommand } from './command.js';
import { newId } from './ids.js';
import { openReviewItem } from './review.js';

describe('review queue', () => {
  let t: TestApp;
  let tenantId: string;
  before(async () => {
    t = await startTestApp();
    ({ tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const open = (dedupeKey?: string) =>
    runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'operator' }, correlationId: 'c', fingerprint: newId() },
      { type: 'test.review' },
      async (cmd) => ({
        status: 200,
        body: { id: await openReviewItem(cmd.tx, cmd.tenantId, cmd.opId, { kind: 'test', detail: { n: 1 }, ...(dedupeKey ? { dedupeKey } : {}) }) },
      }),
    );

  it('opens an item with its operation, and de-duplicates open items by key', async () => {
    const first = await open('same-problem');
    const second = await open('same-problem');
    assert.equal((first.body as { id: string }).id, (second.body as { id: string }).id);
    const rows = await t.admin.query(`SELECT * FROM review_items WHERE tenant_id = $1`, [tenantId]);
    assert.equal(rows.rowCount, 1);
    assert.equal(rows.rows[0].status, 'open');
    assert.equal(rows.rows[0].op_id, first.opId);
  });

  it('review items are never deleted and their facts never change', async () => {
    await open();
    await assert.rejects(t.admin.query(`DELETE FROM review_items WHERE tenant_id = $1`, [tenantId]), /append-only/);
    await assert.rejects(t.admin.query(`UPDATE review_items SET detail = '{}' WHERE tenant_id = $1`, [tenantId]), /immutable/);
  });
});
