import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * A point of sale's last visit is the visit completed last. A visit's times
 * are its transaction's start (now()), and visits of one point of sale can
 * commit in another order than they started (one waits on a stock balance
 * another command holds), so the later commit must not overwrite a later time.
 */
const SHOP = { latitude: -1.286389, longitude: 36.817223 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('points of sale: the last visit', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let n = 0;
  const key = () => ({ idempotencyKey: `last-visit-${process.pid}-${++n}` });

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  async function waitUntilBlocked(): Promise<void> {
    // Until some app-role backend of this database waits on a lock.
    for (let i = 0; i < 100; i++) {
      const { rows } = await t.admin.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      );
      if (rows[0].n > 0) return;
      await sleep(20);
    }
    throw new Error('no request ever waited on a lock');
  }

  it('never goes back in time when two visits complete concurrently and the one that started first commits last', async () => {
    const store = (await owner.post('/v1/stores', { code: 'F1', name: 'Depot F1' })).body;
    const soap = (await owner.post('/v1/skus', { code: 'F1-SOAP', name: 'Soap', unit: 'piece', price: 120 })).body;
    assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: soap.id, quantity: 10 }] })).status, 201);
    const agent = (await owner.post('/v1/tokens', { name: 'agent-f1', role: 'field_agent', store_ids: [store.id] })).body;
    const pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk F1', store_id: store.id, ...SHOP }, key())).body;
    const schedule = async () =>
      (await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agent.id, scheduled_for: new Date().toISOString() }, key())).body;
    const v1 = await schedule();
    const v2 = await schedule();

    // Something else (any command on the soap's balance: a sale, a transfer approval…) holds the balance row for a moment.
    const holder = await t.admin.connect();
    let first: Promise<{ status: number; body: any }>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2 FOR UPDATE', [store.id, soap.id]);
      // Visit 1 starts first and waits for the balance; visit 2 (no goods) completes meanwhile.
      first = owner.post(`/v1/visits/${v1.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }] }, key());
      await waitUntilBlocked();
      await sleep(50);
      const second = await owner.post(`/v1/visits/${v2.id}/complete`, { ...SHOP, lines: [] }, key());
      assert.equal(second.status, 200, JSON.stringify(second.body));
    } finally {
      await holder.query('COMMIT');
      holder.release();
    }
    const firstResponse = await first!;
    assert.equal(firstResponse.status, 200, JSON.stringify(firstResponse.body));

    const { rows: visits } = await t.admin.query(
      `SELECT id, completed_at FROM visits WHERE tenant_id = $1 AND point_of_sale_id = $2 ORDER BY completed_at DESC, id`,
      [tenantId, pos.id],
    );
    const { rows: [row] } = await t.admin.query(`SELECT last_visit_id, last_visit_at FROM points_of_sale WHERE id = $1`, [pos.id]);
    const latest = visits[0];
    assert.ok(
      row.last_visit_at.getTime() >= latest.completed_at.getTime() && row.last_visit_id === latest.id,
      `point of sale says last visit ${row.last_visit_id} at ${row.last_visit_at.toISOString()}, ` +
        `but visit ${latest.id} was completed later, at ${latest.completed_at.toISOString()} ` +
        `(visits: ${visits.map((v) => `${v.id === v1.id ? 'v1' : 'v2'}@${v.completed_at.toISOString()}`).join(', ')})`,
    );
  });
});
