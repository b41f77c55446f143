import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { runCommand } from './command.js';
import { newId } from './ids.js';
import { openReviewItem } from './review.js';

describe('review queue', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  before(async () => {
    t = await startTestApp();
    ({ tenantId, owner } = await t.newTenant());
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

  it('an open item with the key resolved at the moment a new one is skipped for it: the new one is opened, not lost', async () => {
    // Given an open item for a problem
    const first = (await open('resolved-meanwhile')).body as { id: string };
    // When someone resolves it just after the next opening of that problem was
    // skipped as a duplicate, before the opening looks the open item up
    const original = pg.Client.prototype.query;
    let resolved: Promise<unknown> | undefined;
    (pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
      const first_ = args[0] as string | { text?: string } | undefined;
      const text = typeof first_ === 'string' ? first_ : (first_?.text ?? '');
      if (resolved === undefined && text.includes('SELECT id, dedupe_key FROM review_items')) {
        resolved = owner.post(`/v1/review-items/${first.id}/resolve`, { note: 'fixed, I think' });
        return resolved.then(() => (original as unknown as (...a: unknown[]) => unknown).apply(this, args));
      }
      return (original as unknown as (...a: unknown[]) => unknown).apply(this, args);
    };
    let second: { id: string };
    try {
      second = (await open('resolved-meanwhile')).body as { id: string };
    } finally {
      pg.Client.prototype.query = original;
    }
    assert.ok(resolved, 'the opening looked the open item up');
    assert.equal(((await resolved) as { status: number }).status, 200);
    // Then the problem has an open item again, the one the opening answered
    const openItems = await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND dedupe_key = 'resolved-meanwhile' AND status = 'open'`, [tenantId]);
    assert.deepEqual(openItems.rows.map((row: { id: string }) => row.id), [second.id]);
  });
});
