import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { asAppInTenant } from '../../test/support/database.js';

describe('the audit log is append-only', () => {
  let t: TestApp;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    const tenant = await t.newTenant();
    tenantId = tenant.tenantId;
    await tenant.owner.post('/v1/stores', { code: 'AUD', name: 'Audited' }, { headers: { 'x-correlation-id': 'audit-corr-1' } });
  });
  after(() => t.close());

  /** One statement as the app role in the tenant's context, in its own transaction. */
  const asApp = (statement: string) => asAppInTenant(t.appPool, tenantId, [[statement]]);

  it('records the request correlation id on the command event', async () => {
    const event = (await t.admin.query(`SELECT * FROM events WHERE tenant_id = $1 AND type = 'store.create' AND subject_type IS NULL`, [tenantId])).rows[0];
    assert.equal(event.correlation_id, 'audit-corr-1');
    assert.deepEqual(event.payload, { code: 'AUD', name: 'Audited' });
  });

  it('the app role cannot update or delete events', async () => {
    await assert.rejects(asApp(`UPDATE events SET actor = 'someone else'`), /append-only/);
    await assert.rejects(asApp(`DELETE FROM events`), /append-only/);
    await assert.rejects(asApp(`TRUNCATE events`), /append-only|permission denied/);
  });

  it('even the owning (migration) role cannot update or delete events', async () => {
    await assert.rejects(t.admin.query(`UPDATE events SET actor = 'x'`), /append-only/);
    await assert.rejects(t.admin.query(`DELETE FROM events`), /append-only/);
    await assert.rejects(t.admin.query(`TRUNCATE events CASCADE`), /append-only/);
    const remaining = await t.admin.query('SELECT count(*)::int AS n FROM events WHERE tenant_id = $1', [tenantId]);
    assert.ok(remaining.rows[0].n >= 2);
  });

  it('operations are immutable except for being marked reverted once; never deleted', async () => {
    await assert.rejects(asApp(`UPDATE operations SET actor = 'x'`), /immutable/);
    await assert.rejects(asApp(`DELETE FROM operations`), /never deleted/);
    await assert.rejects(t.admin.query(`UPDATE operations SET type = 'x' WHERE tenant_id = '${tenantId}'`), /immutable/);
  });

  it("what a token grants and its revocation are final: the app role cannot raise a token's role, widen its stores or undo a revoke", async () => {
    const issued = await t.admin.query(`SELECT id FROM api_tokens WHERE tenant_id = $1 LIMIT 1`, [tenantId]);
    const tokenId = issued.rows[0].id as string;
    await assert.rejects(asApp(`UPDATE api_tokens SET role = CASE WHEN role = 'owner' THEN 'cashier' ELSE 'owner' END WHERE id = '${tokenId}'`), /api_tokens.role is immutable/);
    await assert.rejects(asApp(`UPDATE api_tokens SET store_ids = CASE WHEN store_ids IS NULL THEN '{}'::uuid[] ELSE NULL END WHERE id = '${tokenId}'`), /api_tokens.store_ids is immutable/);
    await assert.rejects(asApp(`UPDATE api_tokens SET name = 'renamed' WHERE id = '${tokenId}'`), /api_tokens.name is immutable/);
    // Revoking is allowed once; undoing or moving it is not
    await asApp(`UPDATE api_tokens SET revoked_at = now() WHERE id = '${tokenId}'`);
    await assert.rejects(asApp(`UPDATE api_tokens SET revoked_at = NULL WHERE id = '${tokenId}'`), /revoked_at is final/);
    await assert.rejects(asApp(`UPDATE api_tokens SET revoked_at = now() + interval '1 day' WHERE id = '${tokenId}'`), /revoked_at is final/);
    const row = (await t.admin.query(`SELECT revoked_at IS NOT NULL AS revoked FROM api_tokens WHERE id = $1`, [tokenId])).rows[0];
    assert.equal(row.revoked, true);
  });

  it('op_id columns cannot change (reusable trigger)', async () => {
    await assert.rejects(asApp(`UPDATE stores SET op_id = gen_random_uuid()`), /immutable/);
    await asApp(`UPDATE stores SET name = 'Renamed'`); // other columns may change
  });

  it('the stock ledger is append-only', async () => {
    // Given a ledger row
    const token = await t.newTenant();
    const s = (await token.owner.post('/v1/stores', { code: 'L', name: 'L' })).body;
    const sku = (await token.owner.post('/v1/skus', { code: 'L', name: 'L', unit: 'piece', price: 1 })).body;
    const receipt = await token.owner.post(`/v1/stores/${s.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 3 }] });
    assert.equal(receipt.status, 201);
    // Then neither role can rewrite or remove it
    await assert.rejects(t.admin.query(`UPDATE stock_ledger SET quantity_change = 1 WHERE tenant_id = $1`, [token.tenantId]), /append-only/);
    await assert.rejects(t.admin.query(`DELETE FROM stock_ledger WHERE tenant_id = $1`, [token.tenantId]), /append-only/);
  });
});
