import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';

/**
 * Separation of duties on the review queue: the token whose operation opened
 * a review item (the receipt that declared a transfer short, the sync of an
 * offline sale that found no stock) may not close it — a second person looks.
 * The owner may (a one-person shop has nobody else). The refusal is
 * 403 forbidden, reason second_resolver_required, and writes nothing.
 */
describe('resolving a review item one\'s own operation opened', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let source: string;
  let destination: string;
  let sku: string;

  /** What a refused resolution must not have written. */
  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
                (SELECT count(*) FROM review_items WHERE tenant_id = $1 AND status = 'resolved')::int AS resolved`,
        [tenantId],
      )
    ).rows[0];

  /** A transfer of 10 received as 7 by `receiver`: the transfer_shortfall item its receipt opened. */
  async function shortfallReceivedBy(receiver: ApiClient): Promise<string> {
    const requested = await owner.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items: [{ sku_id: sku, quantity: 10 }] });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    const received = await receiver.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: sku, quantity_received: 7 }] });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    const { rows } = await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'transfer_shortfall' AND subject_id = $2`, [tenantId, requested.body.id]);
    assert.equal(rows.length, 1);
    return rows[0].id;
  }

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    source = await givenStore(owner, 'SRC');
    destination = await givenStore(owner, 'DST');
    sku = await givenSku(owner, 'FLOUR');
    await givenStock(owner, source, [{ sku_id: sku, quantity: 1000 }]);
  });
  after(() => t.close());

  it('the manager whose receipt opened the shortfall is refused (403 second_resolver_required, nothing written); another manager resolves it', async () => {
    const receiver = await givenToken(t, owner, 'manager', [destination]);
    const colleague = await givenToken(t, owner, 'manager', [destination]);
    const item = await shortfallReceivedBy(receiver);

    const before = await counts();
    const refused = await receiver.post(`/v1/review-items/${item}/resolve`, { note: 'three bags written off' }, { idempotencyKey: `own-${item}` });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(refused.body.code, 'forbidden');
    assert.equal(refused.body.reason, 'second_resolver_required');
    assert.equal(typeof refused.body.detail, 'string');
    assert.equal(typeof refused.body.correlation_id, 'string');
    // nothing written: no operation, audit event, idempotency record or resolution
    assert.deepEqual(await counts(), before);
    const row = (await t.admin.query(`SELECT status, resolved_by_op, resolution_note FROM review_items WHERE tenant_id = $1 AND id = $2`, [tenantId, item])).rows[0];
    assert.deepEqual(row, { status: 'open', resolved_by_op: null, resolution_note: null });
    // the same request again, same key: refused again (a refusal is not stored), still nothing written
    const again = await receiver.post(`/v1/review-items/${item}/resolve`, { note: 'three bags written off' }, { idempotencyKey: `own-${item}` });
    assert.equal(again.status, 403);
    assert.deepEqual(await counts(), before);
    // it still sees the item it reported
    assert.equal((await receiver.get(`/v1/review-items/${item}`)).status, 200);

    const resolved = await colleague.post(`/v1/review-items/${item}/resolve`, { note: 'three bags written off' });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    assert.equal(resolved.body.status, 'resolved');

    // Once resolved, the item answers as any resolved item does, to its reporter too: the same
    // resolution is already done (200, replayed, nothing written), another note 409.
    const after = await counts();
    const sameNote = await receiver.post(`/v1/review-items/${item}/resolve`, { note: 'three bags written off' });
    assert.equal(sameNote.status, 200, JSON.stringify(sameNote.body));
    assert.equal(sameNote.headers.get('idempotent-replayed'), 'true');
    assert.equal(sameNote.body.resolved_by_op, resolved.body.resolved_by_op);
    assert.equal((await receiver.post(`/v1/review-items/${item}/resolve`, { note: 'mine' })).status, 409);
    assert.deepEqual(await counts(), after);
  });

  it('an admin is held to it too; the owner resolves what it opened itself (a one-person shop), and what others opened', async () => {
    const admin = await givenToken(t, owner, 'admin');
    const byAdmin = await shortfallReceivedBy(admin);
    const refused = await admin.post(`/v1/review-items/${byAdmin}/resolve`, { note: 'fine' });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.reason, 'second_resolver_required');
    assert.equal((await owner.post(`/v1/review-items/${byAdmin}/resolve`, { note: 'checked the truck' })).status, 200);

    const byOwner = await shortfallReceivedBy(owner);
    const ownResolved = await owner.post(`/v1/review-items/${byOwner}/resolve`, { note: 'my own count; written off' });
    assert.equal(ownResolved.status, 200, JSON.stringify(ownResolved.body));
    assert.equal(ownResolved.body.status, 'resolved');
  });

  it('an offline sale\'s shortage: the till token that synced it may not close it; a manager may', async () => {
    const till = await givenToken(t, owner, 'manager', [source]);
    const manager = await givenToken(t, owner, 'manager', [source]);
    const synced = await till.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: source, payment_method: 'cash', items: [{ sku_id: sku, quantity: 5000, unit_price: 1 }], client_created_at: new Date().toISOString() }],
    });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const { rows } = await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'offline_sale_shortage' AND subject_id = $2`, [tenantId, synced.body.results[0].body.id]);
    assert.equal(rows.length, 1);
    const refused = await till.post(`/v1/review-items/${rows[0].id}/resolve`, { note: 'stock counted again' });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.reason, 'second_resolver_required');
    assert.equal((await manager.post(`/v1/review-items/${rows[0].id}/resolve`, { note: 'stock counted again' })).status, 200);
  });

  it('an item the worker opened (a nightly finding, a job that gave up) has no causing token: any manager resolves it', async () => {
    const manager = await givenToken(t, owner, 'manager');
    const opId = randomUUID();
    const item = randomUUID();
    await t.admin.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'integrity.review', 'worker', 'c')`, [tenantId, opId]);
    await t.admin.query(`INSERT INTO events (tenant_id, op_id, type, actor, correlation_id) VALUES ($1, $2, 'integrity.review', 'worker', 'c')`, [tenantId, opId]);
    await t.admin.query(`INSERT INTO review_items (tenant_id, id, kind, detail, op_id) VALUES ($1, $2, 'integrity_finding', '{}', $3)`, [tenantId, item, opId]);
    assert.equal((await manager.post(`/v1/review-items/${item}/resolve`, { note: 'balance corrected by an adjustment' })).status, 200);
  });
});
