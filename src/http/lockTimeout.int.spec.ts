import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { capturingLogger } from '../../test/support/logs.js';

/**
 * A command that waits longer than lock_timeout (15 s, src/core/db.ts) for a
 * row another transaction holds — a stuck session, a long manual UPDATE in
 * psql — is refused by PostgreSQL with lock_not_available (55P03), and a
 * statement past statement_timeout with query_canceled (57014). Nothing was
 * written (the command's transaction rolled back) and the same request may
 * simply be sent again: `503 service_unavailable` with `Retry-After`, as for
 * the database being unreachable — not `500 internal_error`, which tells a
 * till the server is broken. The operator still hears of it (logged at warn,
 * reported): something held the row for 15 s.
 */
describe('a command that waited past lock_timeout', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let skuId: string;
  const logs = capturingLogger('info');
  const reported: unknown[] = [];

  before(async () => {
    t = await startTestApp({}, { logger: logs.logger, reportError: (error) => reported.push(error) });
    ({ owner, tenantId } = await t.newTenant());
    storeId = (await owner.post('/v1/stores', { code: 'LOCK', name: 'Locked' })).body.id;
    skuId = (await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'flour', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 10 }] })).status, 201);
  });
  after(() => t.close());

  const rows = async () => {
    const { rows } = await t.admin.query(
      `SELECT (SELECT quantity::int FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS balance,
              (SELECT count(*)::int FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS ledger_rows,
              (SELECT count(*)::int FROM operations WHERE tenant_id = $1) AS operations,
              (SELECT count(*)::int FROM events WHERE tenant_id = $1) AS events`,
      [tenantId, storeId, skuId],
    );
    return rows[0] as { balance: number; ledger_rows: number; operations: number; events: number };
  };

  it('is 503 service_unavailable with Retry-After, nothing written; the same request sent again is applied once', async () => {
    const before = await rows();
    const holder: pg.PoolClient = await t.admin.connect();
    const key = `adjust-${randomUUID()}`;
    let answer;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeId, skuId]);
      answer = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -3, reason: 'damaged' }, { idempotencyKey: key });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.match(String(answer.headers.get('content-type')), /^application\/problem\+json/);
    assert.equal(answer.body.code, 'service_unavailable');
    assert.match(answer.body.detail, /nothing was written/);
    assert.ok(Number(answer.headers.get('retry-after')) >= 1, `Retry-After: ${answer.headers.get('retry-after')}`);
    assert.deepEqual(await rows(), before, 'nothing written');
    assert.ok(
      logs.lines.some((line) => line.level === 40 && line.msg === 'the database gave up waiting for this request' && line.correlation_id === answer.body.correlation_id),
      'logged at warn under the request',
    );

    const again = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -3, reason: 'damaged' }, { idempotencyKey: key });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    const replay = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -3, reason: 'damaged' }, { idempotencyKey: key });
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const after = await rows();
    assert.equal(after.balance, before.balance - 3);
    assert.equal(after.ledger_rows, before.ledger_rows + 1);
    assert.equal(after.operations, before.operations + 1);
  });

  it('a synced sale behind a held row: its result is 503, nothing written, and the wait is logged at warn as for any request', async () => {
    // A SKU of its own: the test above left its stock moved.
    const sku = (await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'salt', unit: 'piece', price: 100 })).body.id as string;
    assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] })).status, 201);
    const sales = async () => Number((await t.admin.query(`SELECT count(*)::int AS n FROM sales WHERE tenant_id = $1`, [tenantId])).rows[0].n);
    const salesBefore = await sales();
    const holder: pg.PoolClient = await t.admin.connect();
    const key = `sync-${randomUUID()}`;
    let synced;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeId, sku]);
      synced = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: key, store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] }] });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const [result] = synced.body.results;
    assert.equal(result.status, 503, JSON.stringify(result));
    assert.equal(result.body.code, 'service_unavailable');
    assert.equal(await sales(), salesBefore, 'nothing written');
    assert.ok(
      logs.lines.some((line) => line.level === 40 && line.msg === 'the database gave up waiting for this request' && line.idempotency_key === key),
      'the synced sale that waited past lock_timeout is logged at warn, naming its key',
    );
    assert.equal(reported.filter((error) => (error as { code?: unknown }).code === '55P03').length, 2, 'reported: the adjustment above, and this synced sale');
  });
});
